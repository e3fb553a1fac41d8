"""The animated GLB passes the Khronos glTF validator and plays in three.js, in headless Chromium, where it should.

The JS side is pinned in tests/js/package-lock.json; `make test` installs it (npm ci). The tests skip, saying why,
where node, the installed packages or Chromium (.ci/run installs Debian's) are missing.
"""

import functools
import json
import math
import re
import shutil
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from dynapose4d.export.gltf import write_animated_glb

JS = Path(__file__).resolve().parent / "js"
THREE = JS / "node_modules" / "three"
APT = {"node": "nodejs npm", "chromium": "chromium"}  # Debian's packages


def needs(program: str, package: str) -> pytest.MarkDecorator:
    """Skip unless `program` and tests/js/node_modules/`package` are installed, saying which is missing and why."""
    reasons = []
    if shutil.which(program) is None:
        reasons.append(f"{program} is not installed (apt-get install {APT[program]})")
    if not (JS / "node_modules" / package).is_dir():
        reasons.append(f"tests/js/node_modules/{package} is missing: run make test, which installs tests/js/ with npm")
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons))


needs_validator, needs_browser = needs("node", "gltf-validator"), needs("chromium", "three")

RED = (0.9, 0.1, 0.1)  # sRGB
FPS, XS = 4.0, np.linspace(-0.5, 0.5, 4)  # the ball's centre x at frames 0..3, at t = 0, 0.25, 0.5, 0.75 s
FOV, DISTANCE = 40.0, 2.0  # vertical, degrees; the camera on +z looks at the origin, +x right in the image


@pytest.fixture(scope="module")
def ball_glb(tmp_path_factory) -> Path:
    """A red icosphere of radius 0.2 moving along x over 4 frames, as write_animated_glb writes it."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    vertices = sphere.vertices.astype(np.float32)
    frames = np.stack([vertices + np.array([x, 0.0, 0.0], np.float32) for x in XS])
    path = tmp_path_factory.mktemp("glb") / "ball.glb"
    write_animated_glb(path, vertices, sphere.faces, np.tile(RED, (len(vertices), 1)), frames, FPS)
    return path


def assert_valid(path: Path) -> dict:
    """The Khronos validator's report on the GLB at `path`, which must hold no error and no warning."""
    command = ["node", str(JS / "validate.mjs"), str(path)]
    report = json.loads(subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout)
    issues = report["issues"]
    # severity: 0 error, 1 warning, 2 information, 3 hint
    messages = [f"{m['severity']} {m['code']} {m.get('pointer', '')}: {m['message']}" for m in issues["messages"]]
    assert issues["numErrors"] == issues["numWarnings"] == 0, "\n".join(messages)
    assert report["info"]["animationCount"] == 1 and report["info"]["hasMorphTargets"]
    return report


@needs_validator
def test_the_khronos_validator_finds_no_errors_and_no_warnings(ball_glb):
    assert_valid(ball_glb)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # not one stderr line per request in the test output
        pass


@pytest.fixture(scope="module")
def page(ball_glb, tmp_path_factory):
    """The page's url, served from a directory holding it, the GLB and three (the import map's ./three/)."""
    root = tmp_path_factory.mktemp("site")
    shutil.copy(JS / "view_glb.html", root)
    shutil.copy(ball_glb, root)
    (root / "three").symlink_to(THREE, target_is_directory=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/view_glb.html?glb={ball_glb.name}"
    server.shutdown()
    server.server_close()


def screenshot(url: str, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The page's pixels [H, W, 3] and its canvas size (width, height), from one headless Chromium run.

    The canvas is the page's size as the page reports it (1200 x 713 here): headless Chromium counts its window
    decorations in --window-size, so the projection uses the reported size, not the window's.
    """
    command = [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
               "--enable-unsafe-swiftshader", "--window-size=1200,800", "--virtual-time-budget=8000",
               f"--screenshot={path}", "--dump-dom", url]  # fmt: skip
    dom = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title.startswith("rendered "), f"the page says {title!r}"
    width, height = map(int, title.split()[1].split("x"))
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16), (width, height)


def projected_x(x: float, width: int, height: int) -> float:
    """The pixel column of world point (x, 0, 0) through three's pinhole camera (vertical fov, aspect W/H)."""
    focal = height / 2 / math.tan(math.radians(FOV) / 2)  # pixels
    return width / 2 + focal * x / DISTANCE


@needs_browser
@pytest.mark.parametrize(
    "t, x",
    [(0.0, XS[0]), (0.75, XS[3]),  # frames 0 and 3, the last one held at the clip's end
     (0.375, (XS[1] + XS[2]) / 2)],  # halfway between frames 1 and 2: LINEAR gives x = 0, STEP would give XS[1]
    ids=["frame_0", "frame_3", "frame_1.5"],
)  # fmt: skip
def test_three_js_plays_the_glb_and_draws_the_ball_where_the_frame_has_it(page, t, x, tmp_path):
    image, (width, height) = screenshot(f"{page}&t={t}&fov={FOV}&eye=0,0,{DISTANCE}", tmp_path / f"glb_{t}.png")
    mask = (image[..., 0] > image[..., 1] + 60) & (image[..., 0] > image[..., 2] + 60)
    assert mask.sum() > 1000, "no red ball in the screenshot"
    rows, columns = np.nonzero(mask)
    # Perspective shifts a sphere's silhouette off the projected centre by a few pixels, well within 2 %.
    tolerance = 0.02 * width
    assert abs(columns.mean() - projected_x(x, width, height)) < tolerance
    assert abs(rows.mean() - height / 2) < tolerance  # the ball stays at y = 0
    # Unlit (the page's MeshBasicMaterial), its pixels are its sRGB colour: COLOR_0 was decoded as linear.
    np.testing.assert_allclose(np.median(image[mask], axis=0), np.array(RED) * 255, atol=2)
