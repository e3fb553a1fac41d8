"""An animated mesh as one GLB (glTF 2.0 morph targets, one per frame), or as one OBJ/PLY per frame.

The GLB holds one mesh whose POSITION is the canonical vertices and whose morph target t is the displacement
frames[t] - vertices, so a viewer's position = vertices + sum_t weight_t * target_t is frames[t] when the weights
are one-hot on t. The mesh's default weights are one-hot on frame 0, so viewers that do not play animations show
frame 0, not the canonical pose. One animation keys the weights one-hot at t / fps with LINEAR interpolation:
between two keys the weights blend the two neighbouring targets, which is the linear interpolation of their
positions, so playback is smooth at any display rate and holds the last frame after the end.
"""

import os
from pathlib import Path

import numpy as np
import pygltflib as gl
import trimesh

from ..errors import DynaPoseError
from ..media import atomic_output
from . import FORMATS


def write_animated_glb(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray,
    frames: np.ndarray,
    fps: float,
    name: str = "dynapose4d",
) -> None:
    """Write the mesh animated over `frames` as one GLB, atomically.

    vertices [V, 3] (canonical), faces [F, 3] int, colors [V, 3] sRGB in [0, 1] (as the renders; stored linear,
    as glTF requires of COLOR_0), frames [T, V, 3] vertex positions per driving frame, fps the video's rate.
    """
    vertices, faces, colors, frames = _checked_mesh(vertices, faces, colors, frames)
    if not (np.isfinite(fps) and fps > 0):
        raise DynaPoseError(f"fps must be a positive number, got {fps}")
    gltf = gl.GLTF2(asset=gl.Asset(generator="DynaPose4D", version="2.0"))
    blob = _Blob(gltf)
    gltf.meshes.append(_mesh(blob, vertices, faces, colors, frames, name))
    gltf.materials.append(_material())
    gltf.nodes.append(gl.Node(mesh=0, name=name, extras={"fps": float(fps), "frames": len(frames)}))
    gltf.scenes.append(gl.Scene(nodes=[0]))
    gltf.scene = 0
    gltf.animations.append(_one_hot_animation(blob, len(frames), fps, name))
    gltf.buffers.append(gl.Buffer(byteLength=len(blob.data)))
    gltf.set_binary_blob(bytes(blob.data))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        gltf.save_binary(tmp)


def write_frame_meshes(
    directory: str | os.PathLike,
    vertices_per_frame: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray,
    fmt: str = "obj",
) -> list[Path]:
    """Write one mesh per frame (`000.obj`, `001.obj`, ...) with vertex colours; returns the paths in frame order.

    For tools without glTF animation. vertices_per_frame [T, V, 3], faces [F, 3] int, colors [V, 3] sRGB in
    [0, 1], stored as 8-bit sRGB as OBJ (`v x y z r g b`) and PLY readers expect.
    """
    if fmt not in FORMATS[1:]:
        raise DynaPoseError(f"fmt must be one of {FORMATS[1:]}, got {fmt!r}")
    frames = np.asarray(vertices_per_frame)
    if frames.ndim != 3:
        raise DynaPoseError(f"vertices_per_frame must be [T, V, 3], got shape {frames.shape}")
    _, faces, colors, frames = _checked_mesh(frames[0], faces, colors, frames)
    rgb = np.round(colors * 255).astype(np.uint8)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(len(frames) - 1)))  # names sort in frame order past 999 frames too
    paths = [directory / f"{t:0{width}d}.{fmt}" for t in range(len(frames))]
    for frame, path in zip(frames, paths):
        # process=False: trimesh would otherwise merge vertices and drop faces, changing the topology.
        mesh = trimesh.Trimesh(vertices=frame, faces=faces, vertex_colors=rgb, process=False)
        with atomic_output(path) as tmp:
            mesh.export(tmp, file_type=fmt)
    return paths


def _checked_mesh(vertices, faces, colors, frames) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as float32 / int64 arrays, or a DynaPoseError naming the first problem."""
    vertices, colors, frames = (np.asarray(a, dtype=np.float32) for a in (vertices, colors, frames))
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise DynaPoseError(f"vertices must be [V, 3] with V >= 1, got shape {vertices.shape}")
    count = len(vertices)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise DynaPoseError(f"faces must be [F, 3] with F >= 1, got shape {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise DynaPoseError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    if faces.min() < 0 or faces.max() >= count:
        raise DynaPoseError(f"faces index vertices {faces.min()}..{faces.max()}, outside 0..{count - 1}")
    if colors.shape != (count, 3):
        raise DynaPoseError(f"colors must be [V, 3] = {[count, 3]}, got shape {colors.shape}")
    if frames.ndim != 3 or frames.shape[1:] != (count, 3) or len(frames) == 0:
        raise DynaPoseError(f"frames must be [T, V, 3] with T >= 1 and V = {count}, got shape {frames.shape}")
    for label, array in (("vertices", vertices), ("colors", colors), ("frames", frames)):
        if not np.isfinite(array).all():
            raise DynaPoseError(f"{label} hold NaN or infinite values")
    if colors.min() < 0 or colors.max() > 1:
        raise DynaPoseError(f"colors must lie in [0, 1] (clip them first), got {colors.min()}..{colors.max()}")
    return vertices, faces.astype(np.int64), colors, frames


class _Blob:
    """The GLB's one binary buffer: one bufferView and one accessor per array added."""

    def __init__(self, gltf: gl.GLTF2):
        self.gltf = gltf
        self.data = bytearray()

    def add(self, array: np.ndarray, kind: str, target: int | None = None, bounds: bool = False) -> int:
        """Append `array` [count, ...] (float32, uint16 or uint32) and return its accessor's index."""
        raw = array.tobytes()
        self.gltf.bufferViews.append(
            gl.BufferView(buffer=0, byteOffset=len(self.data), byteLength=len(raw), target=target)
        )
        self.data += raw + b"\0" * (-len(raw) % 4)  # the next view starts 4-byte aligned, as float accessors need
        rows = array.reshape(len(array), -1)
        # min/max: the spec requires them on POSITION (morph targets' too) and on animation input accessors.
        limits = {"min": rows.min(0).tolist(), "max": rows.max(0).tolist()} if bounds else {}
        component = {np.float32: gl.FLOAT, np.uint16: gl.UNSIGNED_SHORT, np.uint32: gl.UNSIGNED_INT}[array.dtype.type]
        accessor = gl.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1, componentType=component, count=len(array), type=kind, **limits
        )
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1


def _material() -> gl.Material:
    """Vertex colours multiply baseColorFactor (white); a rough dielectric shows them nearly as they are."""
    pbr = gl.PbrMetallicRoughness(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=1.0)
    # doubleSided: marching-cubes surfaces can be open, and their inside then shows.
    return gl.Material(name="vertex_colors", pbrMetallicRoughness=pbr, doubleSided=True)


def _mesh(blob: _Blob, vertices, faces, colors, frames, name: str) -> gl.Mesh:
    """The one-primitive mesh: base POSITION, COLOR_0, indices and one POSITION morph target per frame."""
    # 65535 is the primitive restart value, which indices must not hold: 16 bits while V <= 65535.
    index_type = np.uint16 if len(vertices) <= 65535 else np.uint32
    attributes = gl.Attributes(
        POSITION=blob.add(vertices, gl.VEC3, gl.ARRAY_BUFFER, bounds=True),
        COLOR_0=blob.add(_srgb_to_linear(colors), gl.VEC3, gl.ARRAY_BUFFER),
    )
    indices = blob.add(faces.reshape(-1).astype(index_type), gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER)
    targets = [
        gl.Attributes(POSITION=blob.add(frame - vertices, gl.VEC3, gl.ARRAY_BUFFER, bounds=True)) for frame in frames
    ]
    primitive = gl.Primitive(attributes=attributes, indices=indices, mode=gl.TRIANGLES, material=0, targets=targets)
    weights = [1.0] + [0.0] * (len(frames) - 1)  # shown by viewers that do not play the animation: frame 0
    # extras.targetNames: the de facto convention (three.js, Blender) for morph target names.
    names = [f"frame_{t:03d}" for t in range(len(frames))]
    return gl.Mesh(name=name, primitives=[primitive], weights=weights, extras={"targetNames": names})


def _one_hot_animation(blob: _Blob, count: int, fps: float, name: str) -> gl.Animation:
    """Weights one-hot on target t at time t / fps, LINEAR: input [T] seconds, output [T * T] weights."""
    times = blob.add(np.arange(count, dtype=np.float32) / np.float32(fps), gl.SCALAR, bounds=True)
    weights = blob.add(np.eye(count, dtype=np.float32).reshape(-1), gl.SCALAR)
    sampler = gl.AnimationSampler(input=times, output=weights, interpolation=gl.ANIM_LINEAR)
    channel = gl.AnimationChannel(sampler=0, target=gl.AnimationChannelTarget(node=0, path=gl.WEIGHTS))
    return gl.Animation(name=name, samplers=[sampler], channels=[channel])


def _srgb_to_linear(colors: np.ndarray) -> np.ndarray:
    """sRGB-encoded [..., 3] in [0, 1] -> linear (IEC 61966-2-1), as glTF's COLOR_0 holds."""
    linear = np.where(colors <= 0.04045, colors / 12.92, ((colors + 0.055) / 1.055) ** 2.4)
    return linear.astype(np.float32)
