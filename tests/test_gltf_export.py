"""The animated GLB (morph targets, one per frame) and the per-frame OBJ/PLY meshes, read back independently."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from dynapose4d.errors import DynaPoseError
from dynapose4d.export.gltf import write_animated_glb, write_frame_meshes

# A GLB reader with struct, json and numpy only, so the checks do not trust pygltflib, which wrote the file.
_DTYPES = {5121: np.dtype("u1"), 5123: np.dtype("<u2"), 5125: np.dtype("<u4"), 5126: np.dtype("<f4")}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb(path: Path) -> tuple[dict, bytes]:
    """A GLB's JSON document and BIN chunk, checking the header and chunk layout."""
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_length, json_type = struct.unpack_from("<I4s", data, 12)
    assert json_type == b"JSON" and json_length % 4 == 0
    bin_start = 20 + json_length
    bin_length, bin_type = struct.unpack_from("<I4s", data, bin_start)
    assert bin_type == b"BIN\0" and bin_start + 8 + bin_length == len(data)
    return json.loads(data[20:bin_start]), data[bin_start + 8 :]


def read_accessor(document: dict, binary: bytes, index: int) -> np.ndarray:
    """Accessor `index` as [count, width] (or [count] for SCALAR), through its bufferView's offset and stride."""
    accessor = document["accessors"][index]
    view = document["bufferViews"][accessor["bufferView"]]
    dtype, width = _DTYPES[accessor["componentType"]], _WIDTHS[accessor["type"]]
    assert not accessor.get("normalized", False)
    stride = view.get("byteStride", dtype.itemsize * width)
    start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
    assert start % dtype.itemsize == 0  # the spec's alignment rule
    end = start + (accessor["count"] - 1) * stride + dtype.itemsize * width
    assert end <= view.get("byteOffset", 0) + view["byteLength"] <= len(binary)
    shape, strides = (accessor["count"], width), (stride, dtype.itemsize)
    array = np.ndarray(shape, dtype, buffer=binary, offset=start, strides=strides).copy()
    return array[:, 0] if accessor["type"] == "SCALAR" else array


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 decoding, written out here independently of the module's."""
    return np.array([x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c.ravel()]).reshape(c.shape)


T, FPS = 5, 24.0


def animated_sphere() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An icosphere (canonical), random colours and T frames of known motion: scale 1 + 0.1 t, then translate."""
    sphere = trimesh.creation.icosphere(subdivisions=1)
    vertices = sphere.vertices.astype(np.float32)
    colors = np.random.default_rng(0).random((len(vertices), 3)).astype(np.float32)
    frames = np.stack(
        [vertices * (1 + 0.1 * t) + np.array([0.2 * t, -0.1 * t, 0.05], np.float32) for t in range(T)]
    ).astype(np.float32)
    return vertices, sphere.faces, colors, frames


@pytest.fixture(scope="module")
def glb(tmp_path_factory):
    vertices, faces, colors, frames = animated_sphere()
    path = tmp_path_factory.mktemp("glb") / "anim.glb"
    write_animated_glb(path, vertices, faces, colors, frames, FPS)
    assert [p.name for p in path.parent.iterdir()] == ["anim.glb"]  # the atomic write left no temporary file
    document, binary = read_glb(path)
    return document, binary, (vertices, faces, colors, frames)


def test_glb_structure(glb):
    document, _, _ = glb
    assert document["asset"]["version"] == "2.0" and "DynaPose4D" in document["asset"]["generator"]
    scene = document["scenes"][document["scene"]]
    (node,) = [document["nodes"][i] for i in scene["nodes"]]
    assert node["mesh"] == 0 and node["extras"] == {"fps": FPS, "frames": T}
    (mesh,) = document["meshes"]
    (primitive,) = mesh["primitives"]
    assert primitive.get("mode", 4) == 4 and len(primitive["targets"]) == T
    assert mesh["weights"] == [1.0] + [0.0] * (T - 1)  # viewers without animation show frame 0
    material = document["materials"][primitive["material"]]
    assert material["doubleSided"] is True and material["pbrMetallicRoughness"]["metallicFactor"] == 0.0


def test_glb_positions_indices_and_colours(glb):
    document, binary, (vertices, faces, colors, frames) = glb
    primitive = document["meshes"][0]["primitives"][0]
    base = read_accessor(document, binary, primitive["attributes"]["POSITION"])
    np.testing.assert_array_equal(base, vertices)  # POSITION is the canonical mesh
    for t, target in enumerate(primitive["targets"]):
        assert set(target) == {"POSITION"}
        displacement = read_accessor(document, binary, target["POSITION"])
        assert displacement.shape == base.shape
        np.testing.assert_allclose(base + displacement, frames[t], rtol=0, atol=1e-6)
    assert document["accessors"][primitive["indices"]]["componentType"] == 5123  # V < 65536: 16-bit
    np.testing.assert_array_equal(read_accessor(document, binary, primitive["indices"]).reshape(-1, 3), faces)
    color = read_accessor(document, binary, primitive["attributes"]["COLOR_0"])
    assert document["accessors"][primitive["attributes"]["COLOR_0"]]["componentType"] == 5126
    np.testing.assert_allclose(color, srgb_to_linear(colors), rtol=0, atol=1e-6)  # glTF vertex colours are linear


def test_glb_position_accessors_carry_exact_bounds(glb):
    document, binary, _ = glb
    primitive = document["meshes"][0]["primitives"][0]
    for index in [primitive["attributes"]["POSITION"]] + [target["POSITION"] for target in primitive["targets"]]:
        data, accessor = read_accessor(document, binary, index), document["accessors"][index]
        assert accessor["min"] == data.min(0).tolist() and accessor["max"] == data.max(0).tolist()


def test_glb_animation_is_one_hot_linear(glb):
    document, binary, _ = glb
    (animation,) = document["animations"]
    (channel,) = animation["channels"]
    assert channel["target"] == {"node": 0, "path": "weights"}
    sampler = animation["samplers"][channel["sampler"]]
    assert sampler["interpolation"] == "LINEAR"
    times = read_accessor(document, binary, sampler["input"])
    np.testing.assert_allclose(times, np.arange(T) / FPS, rtol=0, atol=1e-6)
    accessor = document["accessors"][sampler["input"]]
    assert accessor["min"] == [times.min()] and accessor["max"] == [times.max()]  # required on animation input
    weights = read_accessor(document, binary, sampler["output"])
    np.testing.assert_array_equal(weights.reshape(T, T), np.eye(T))


def test_glb_single_frame_and_32_bit_indices(tmp_path):
    count = 70_000  # past 16-bit indices
    vertices = np.random.default_rng(1).random((count, 3)).astype(np.float32)
    faces = np.array([[0, 1, count - 1], [2, count - 2, 3]])
    path = tmp_path / "one.glb"
    write_animated_glb(path, vertices, faces, np.zeros((count, 3), np.float32), vertices[None], 30.0)
    document, binary = read_glb(path)
    primitive = document["meshes"][0]["primitives"][0]
    assert document["accessors"][primitive["indices"]]["componentType"] == 5125
    np.testing.assert_array_equal(read_accessor(document, binary, primitive["indices"]).reshape(-1, 3), faces)
    (target,) = primitive["targets"]
    assert not read_accessor(document, binary, target["POSITION"]).any()
    assert document["meshes"][0]["weights"] == [1.0]


def bad_inputs() -> list:
    """(vertices, faces, colors, frames, fps) with one problem each, and the message naming it."""
    v, f, c, fr = animated_sphere()
    nan = fr.copy()
    nan[2, 3, 1] = np.nan
    return [
        ((v[:, :2], f, c, fr, FPS), "vertices must be"),
        ((v, f[:, :2], c, fr, FPS), "faces must be"),
        ((v, f.astype(np.float32), c, fr, FPS), "integer vertex indices"),
        ((v, f + 1, c, fr, FPS), "outside 0..41"),
        ((v, f - 1, c, fr, FPS), "outside 0..41"),
        ((v, f, c[:-1], fr, FPS), "colors must be"),
        ((v, f, c * 2, fr, FPS), r"colors must lie in \[0, 1\]"),
        ((v, f, c, fr[:, :-1], FPS), "frames must be"),
        ((v, f, c, fr[:0], FPS), "T >= 1"),
        ((v, f, c, nan, FPS), "frames hold NaN"),
        ((v, f, c, fr, 0.0), "fps must be a positive"),
    ]


@pytest.mark.parametrize("inputs, message", bad_inputs())
def test_glb_rejects_bad_inputs(tmp_path, inputs, message):
    with pytest.raises(DynaPoseError, match=message):
        write_animated_glb(tmp_path / "bad.glb", *inputs)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_frame_meshes_read_back(tmp_path, fmt):
    _, faces, colors, frames = animated_sphere()
    paths = write_frame_meshes(tmp_path / "frames", frames, faces, colors, fmt=fmt)
    assert [p.name for p in paths] == [f"{t:03d}.{fmt}" for t in range(T)]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [p.name for p in paths]
    for frame, path in zip(frames, paths):
        mesh = trimesh.load(path, process=False)
        np.testing.assert_allclose(mesh.vertices, frame, rtol=0, atol=1e-6)
        assert len(mesh.faces) == len(faces)
        np.testing.assert_array_equal(mesh.faces, faces)
        np.testing.assert_array_equal(mesh.visual.vertex_colors[:, :3], np.round(colors * 255))


def test_frame_meshes_reject_bad_inputs(tmp_path):
    _, faces, colors, frames = animated_sphere()
    with pytest.raises(DynaPoseError, match="fmt must be one of"):
        write_frame_meshes(tmp_path, frames, faces, colors, fmt="stl")
    with pytest.raises(DynaPoseError, match=r"vertices_per_frame must be \[T, V, 3\]"):
        write_frame_meshes(tmp_path, frames[0], faces, colors)
    with pytest.raises(DynaPoseError, match="faces index vertices"):
        write_frame_meshes(tmp_path, frames, faces + 100, colors)
