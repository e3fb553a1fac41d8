// The Khronos glTF validator's report on one GLB, as JSON on stdout: `node tests/js/validate.mjs file.glb`.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { validateBytes } from "gltf-validator";

const path = process.argv[2];
const bytes = await readFile(path);
// maxIssues 0: every issue, not the first 100; no timestamp, so two reports on one file are equal.
const report = await validateBytes(new Uint8Array(bytes), { uri: basename(path), maxIssues: 0, writeTimestamp: false });
console.log(JSON.stringify(report, null, 2));
