"""A multi-view 4D ground-truth sample: what a run trains on and is scored against, on disk.

Anything that can render an animated object from many cameras (Blender, a simulator, a
capture rig, `scripts/make_synthetic_sample.py`) can write one; `experiment=ground_truth
sample=<dir>` trains on it and scores the result at its own held-out cameras.

    <sample>/
      sample.json       cameras, frame count, keypoints (below)
      image.png         the input image: the reference view at frame 0, RGBA (alpha = the object's mask)
      driving/NNN.png   the reference view at every frame NNN = 000 .. T-1 (the driving video); 000 = image.png
      eval/VV/NNN.png   held-out views VV = 00, 01, .. (sample.json's eval_views, in order) at every frame
      train/VV/NNN.png  training views for the oracle prior (train_views, in order) at frame 000 only
                        (static stage) or at every frame (`dynamic.prior=oracle` too)

    sample.json = {
      "format": "dynapose4d-sample/1",
      "name": "my-robot", "kind": "robot",          optional labels for reports (default: the folder's name)
      "num_frames": T,
      "reference": {"elevation": 0, "radius": 2.0, "fovy": 49.1},   the input image's camera, at azimuth 0
      "eval_views": [VIEW, ...],  "train_views": [VIEW, ...],  "train_frames": 1 or T,
      "keypoints": {                                  optional; keypoints=oracle reads them
        "names": [N names], "bones": [[i, j], ...],
        "frames": [T x N x [x, y]],                   pixels of the driving frames (0.5 = a pixel's centre)
        "frames3d": [T x N x [x, y, z]],              optional: the same points in world units, every frame
        "joints": true                                optional: false when the points are not joints (a blob's)
      }
    }
    VIEW = {"elevation": deg, "azimuth": deg}         an orbit camera; "radius" and "fovy" default to the reference's
         | {"world_to_camera": 4x4, "K": 3x3}         any OpenCV pinhole camera, K in the view's own pixels

World and cameras follow cameras.py: the object sits at the origin, +y is up, the reference
camera looks at it from +z (azimuth 0). Every image is an 8- or 16-bit RGBA PNG with straight
(unpremultiplied) colour. image.png and driving/ are square and of one size; every image of
eval/ has one size, and every image of train/ one size (it may differ from eval/'s). image.png
equals driving/000.png to IMAGE_TOLERANCE, and no folder holds a frame or a view beyond those
sample.json declares.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cameras import REFERENCE_FOVY, REFERENCE_RADIUS, Cameras, orbit_cameras, reference_camera
from ..errors import DynaPoseError
from ..media import load_png, save_png

FORMAT = "dynapose4d-sample/1"
# image.png and driving/000.png are one image: they may differ by one 8-bit step (a re-encoding), compared
# on premultiplied colour and alpha (the colour stored under a transparent pixel is not part of the image)
IMAGE_TOLERANCE = 1 / 255


class SampleError(DynaPoseError):
    """A ground-truth sample that does not follow the format."""


@dataclass
class ReferenceView:
    """The input image's orbit camera (azimuth 0)."""

    elevation: float = 0.0  # degrees, positive = from above
    radius: float = REFERENCE_RADIUS
    fovy: float = REFERENCE_FOVY


@dataclass
class SampleKeypoints:
    """Keypoints of the object at every driving frame, in that frame's pixels."""

    names: list[str]
    bones: list[tuple[int, int]]
    frames: torch.Tensor  # [T, N, 2] (x, y)
    frames3d: torch.Tensor | None = None  # [T, N, 3] the points in world units: the 3D keypoint error's truth
    joints: bool = True  # the points are joints and the bones between them bones (False: e.g. surface points)

    @property
    def support(self) -> torch.Tensor:
        """The keypoints on the input image [N, 2] (frame 0)."""
        return self.frames[0]


@dataclass
class Sample:
    """A ground-truth sample in memory; images are float RGBA in [0, 1]."""

    image: torch.Tensor  # [H, W, 4] reference view, frame 0
    driving_video: torch.Tensor  # [T, H, W, 4] reference view, every frame
    eval_views: list[dict]  # V camera specs (VIEW above)
    eval_renders: torch.Tensor  # [T, V, He, We, 4]
    train_views: list[dict]  # U camera specs
    train_renders: torch.Tensor  # [F, U, Ht, Wt, 4], F = 1 (frame 0) or T
    reference: ReferenceView = field(default_factory=ReferenceView)
    keypoints: SampleKeypoints | None = None
    name: str = "sample"
    kind: str = "sample"

    @property
    def num_frames(self) -> int:
        return len(self.driving_video)

    def reference_camera(self, size: int | None = None) -> Cameras:
        """The input image's camera rendering `size`² (default: the image's own size)."""
        size = size or self.image.shape[0]
        ref = self.reference
        return reference_camera(size, size, ref.radius, ref.fovy, ref.elevation)

    def eval_cameras(self) -> Cameras:
        """The held-out cameras [V] at the held-out images' size."""
        height, width = self.eval_renders.shape[2:4]
        return cameras_from_views(self.eval_views, self.reference, width, height)

    def train_cameras(self) -> Cameras:
        """The training cameras [U] at the training images' size."""
        height, width = self.train_renders.shape[2:4]
        return cameras_from_views(self.train_views, self.reference, width, height)


def cameras_from_views(views: list[dict], reference: ReferenceView, width: int, height: int) -> Cameras:
    """One batch of cameras from VIEW specs (orbit or OpenCV matrices), validated."""
    batches = []
    for index, view in enumerate(views):
        if "world_to_camera" in view:
            viewmat, K = torch.tensor(view["world_to_camera"], dtype=torch.float32), torch.tensor(view["K"])
            if viewmat.shape != (4, 4) or K.shape != (3, 3):
                raise SampleError(f"view {index}: world_to_camera must be 4x4 and K 3x3")
            batches.append(Cameras(viewmat[None], K.float()[None], width, height))
        elif "elevation" in view and "azimuth" in view:
            radius, fovy = view.get("radius", reference.radius), view.get("fovy", reference.fovy)
            batches.append(orbit_cameras(view["elevation"], view["azimuth"], radius, fovy, width, height))
        else:
            raise SampleError(f"view {index} ({view}) needs elevation and azimuth, or world_to_camera and K")
    if not batches:
        return Cameras(torch.zeros(0, 4, 4), torch.zeros(0, 3, 3), width, height)
    return Cameras.concat(*batches)


# ----- writing ----------------------------------------------------------------------------


def save_sample(sample: Sample, directory) -> None:
    """Write the sample in the format above (8-bit PNGs, so it reads back quantised)."""
    directory = Path(directory)
    save_png_in(directory / "image.png", sample.image)
    for t, frame in enumerate(sample.driving_video):
        save_png_in(directory / "driving" / f"{t:03d}.png", frame)
    for folder, renders in (("eval", sample.eval_renders), ("train", sample.train_renders)):
        for v in range(renders.shape[1]):
            for t, frame in enumerate(renders[:, v]):
                save_png_in(directory / folder / f"{v:02d}" / f"{t:03d}.png", frame)
    meta = {
        "format": FORMAT,
        "name": sample.name,
        "kind": sample.kind,
        "num_frames": sample.num_frames,
        "reference": vars(sample.reference),
        "eval_views": sample.eval_views,
        "train_views": sample.train_views,
        "train_frames": len(sample.train_renders),
    }
    if sample.keypoints is not None:
        keypoints = sample.keypoints
        meta["keypoints"] = {
            "names": keypoints.names,
            "bones": [list(bone) for bone in keypoints.bones],
            "frames": keypoints.frames.tolist(),
            "joints": keypoints.joints,
        }
        if keypoints.frames3d is not None:
            meta["keypoints"]["frames3d"] = keypoints.frames3d.tolist()
    (directory / "sample.json").write_text(json.dumps(meta, indent=1))


def save_png_in(path: Path, rgba: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, rgba)


# ----- reading ----------------------------------------------------------------------------


def load_sample(directory) -> Sample:
    """Read and validate a sample; every problem is a SampleError naming the file and the fix."""
    directory = Path(directory)
    meta = _read_meta(directory)
    frames = meta["num_frames"]
    image = _load_rgba(directory / "image.png")
    if image.shape[0] != image.shape[1]:
        raise SampleError(f"{directory / 'image.png'} is {image.shape[1]}x{image.shape[0]}: it must be square")
    driving = _load_folder(directory / "driving", frames, "num_frames")  # [T, H, W, 4]
    if driving.shape[1:] != image.shape:
        raise SampleError(f"{directory / 'driving'}: its frames must have image.png's size {tuple(image.shape[:2])}")
    _check_same_image(directory, image, driving[0])
    eval_views, train_views = _views(meta, "eval_views"), _views(meta, "train_views")
    train_frames = meta.get("train_frames", 1)
    if train_frames not in (1, frames):
        raise SampleError(f"{directory / 'sample.json'}: train_frames must be 1 or num_frames ({frames})")
    sample = Sample(
        image=image,
        driving_video=driving,
        eval_views=eval_views,
        eval_renders=_load_views(directory / "eval", len(eval_views), frames, "num_frames", "eval_views"),
        train_views=train_views,
        train_renders=_load_views(directory / "train", len(train_views), train_frames, "train_frames", "train_views"),
        reference=_reference(meta),
        keypoints=_keypoints(meta, frames),
        **sample_labels(directory, meta),
    )
    if not sample.eval_views:
        raise SampleError(f"{directory / 'sample.json'}: eval_views is empty: a sample needs held-out views")
    for cameras in (sample.eval_cameras, sample.train_cameras):
        cameras()  # builds, and so validates, every VIEW spec
    return sample


def sample_labels(directory, meta: dict | None = None) -> dict[str, str]:
    """{"name", "kind"} of a sample, for reports: sample.json's, else the folder's name (kind: the name)."""
    meta = _read_meta(Path(directory)) if meta is None else meta
    name = str(meta.get("name", Path(directory).name))
    return {"name": name, "kind": str(meta.get("kind", name))}


def _read_meta(directory: Path) -> dict:
    path = directory / "sample.json"
    if not path.is_file():
        raise SampleError(f"{directory} is not a ground-truth sample: it has no sample.json (see data/sample.py)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SampleError(f"{path} is not valid JSON: {error}") from None
    if meta.get("format") != FORMAT:
        raise SampleError(f"{path}: format must be {FORMAT!r}, got {meta.get('format')!r}")
    if not isinstance(meta.get("num_frames"), int) or meta["num_frames"] < 1:
        raise SampleError(f"{path}: num_frames must be a positive integer")
    return meta


def _views(meta: dict, key: str) -> list[dict]:
    views = meta.get(key, [])
    if not isinstance(views, list) or not all(isinstance(view, dict) for view in views):
        raise SampleError(f"sample.json: {key} must be a list of camera objects")
    return views


def _reference(meta: dict) -> ReferenceView:
    reference = meta.get("reference", {})
    unknown = set(reference) - {"elevation", "radius", "fovy"}
    if unknown:
        raise SampleError(f"sample.json: reference takes elevation, radius and fovy, not {sorted(unknown)}")
    view = ReferenceView(**{key: float(value) for key, value in reference.items()})
    if view.radius <= 0 or not 0 < view.fovy < 180 or abs(view.elevation) >= 90:
        raise SampleError(f"sample.json: reference {vars(view)} needs radius > 0, fovy in (0, 180), |elevation| < 90")
    return view


def _keypoints(meta: dict, frames: int) -> SampleKeypoints | None:
    if "keypoints" not in meta:
        return None
    entry = meta["keypoints"]
    points = torch.tensor(entry["frames"], dtype=torch.float32)
    names, bones = list(entry["names"]), [tuple(bone) for bone in entry.get("bones", [])]
    if points.ndim != 3 or points.shape[0] != frames or points.shape[1:] != (len(names), 2):
        raise SampleError(
            f"sample.json: keypoints.frames must be [{frames} frames][{len(names)} names][x, y], "
            f"got shape {list(points.shape)}"
        )
    if any(not (0 <= i < len(names) and 0 <= j < len(names)) for i, j in bones):
        raise SampleError("sample.json: keypoints.bones must index keypoints.names")
    if not torch.isfinite(points).all():
        raise SampleError("sample.json: keypoints.frames holds non-finite values")
    joints = entry.get("joints", True)
    if not isinstance(joints, bool):
        raise SampleError(f"sample.json: keypoints.joints must be true or false, got {joints!r}")
    return SampleKeypoints(names, bones, points, _keypoints_3d(entry, frames, len(names)), joints)


def _keypoints_3d(entry: dict, frames: int, count: int) -> torch.Tensor | None:
    """keypoints.frames3d [T, N, 3] in world units, or None when the sample has none."""
    if "frames3d" not in entry:
        return None
    points = torch.tensor(entry["frames3d"], dtype=torch.float32)
    if points.shape != (frames, count, 3):
        raise SampleError(
            f"sample.json: keypoints.frames3d must be [{frames} frames][{count} names][x, y, z], "
            f"got shape {list(points.shape)}"
        )
    if not torch.isfinite(points).all():
        raise SampleError("sample.json: keypoints.frames3d holds non-finite values")
    return points


def _load_rgba(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise SampleError(f"{path} is missing")
    image = load_png(path)
    if image.shape[-1] != 4:
        raise SampleError(f"{path} has no alpha channel: sample images are RGBA (alpha = the object's mask)")
    return image


def _check_same_image(directory: Path, image: torch.Tensor, first: torch.Tensor) -> None:
    """image.png [H, W, 4] is the reference view at frame 0, so it must be driving/000.png [H, W, 4]."""
    premultiplied = [torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], dim=-1) for rgba in (image, first)]
    difference = (premultiplied[0] - premultiplied[1]).abs().max().item()
    if difference > IMAGE_TOLERANCE + 1e-6:  # float32 rounding of the 8-bit steps
        raise SampleError(
            f"{directory / 'image.png'} differs from driving/000.png by up to {difference * 255:.1f}/255 (1/255 "
            "allowed): image.png must be the reference view at frame 0, the driving video's first frame"
        )


def _load_folder(folder: Path, count: int, declared: str) -> torch.Tensor:
    """Frames 000 .. count-1 of one folder, [count, H, W, 4], all one size, and no other frame."""
    names = [f"{t:03d}.png" for t in range(count)]
    extra = sorted(path.name for path in folder.glob("*.png") if path.name not in names)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise SampleError(
            f"{folder / extra[0]}{more}: beyond the {count} frame(s) of sample.json's {declared} "
            f"({names[0]} .. {names[-1]}); remove it or raise {declared}"
        )
    images = [_load_rgba(folder / name) for name in names]
    sizes = sorted({tuple(image.shape[:2]) for image in images})
    if len(sizes) > 1:
        raise SampleError(f"{folder}: its images differ in size (height x width {sizes}); they must share one")
    return torch.stack(images)


def _load_views(folder: Path, views: int, frames: int, declared: str, listed: str) -> torch.Tensor:
    """Views 00 .. views-1 of `folder` at `frames` frames: [frames, views, H, W, 4] (views may be 0), one size."""
    names = [f"{v:02d}" for v in range(views)]
    extra = sorted(path.name for path in folder.glob("*") if path.is_dir() and path.name not in names)
    if extra:
        raise SampleError(f"{folder / extra[0]}: a view beyond the {views} of sample.json's {listed}")
    if views == 0:
        return torch.zeros(frames, 0, 1, 1, 4)
    stacks = [_load_folder(folder / name, frames, declared) for name in names]
    sizes = [tuple(stack.shape[1:3]) for stack in stacks]
    odd = next((index for index, size in enumerate(sizes) if size != sizes[0]), None)
    if odd is not None:
        raise SampleError(
            f"{folder / names[odd]} is {sizes[odd][1]}x{sizes[odd][0]} but {folder / names[0]} is "
            f"{sizes[0][1]}x{sizes[0][0]}: every view of {folder.name}/ must have one size (they are rendered "
            "and scored as one batch)"
        )
    return torch.stack(stacks, dim=1)


def orbit_view(elevation: float, azimuth: float) -> dict:
    """A VIEW spec of an orbit camera at the reference's radius and fovy."""
    return {"elevation": float(elevation), "azimuth": float(azimuth)}
