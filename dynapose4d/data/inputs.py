"""The run's inputs, written once to <run_dir>/input: the reference image and any ground truth."""

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig

from ..checkpoint import mark_done
from ..downloads import sha256
from ..errors import DynaPoseError
from ..media import save_png, save_png_frames
from .image import MASK_FIX, load_reference_image, missing_mask, open_image
from .sample import Sample

if TYPE_CHECKING:
    from ..run import Run

log = logging.getLogger(__name__)


def read_inputs(cfg: DictConfig) -> dict:
    """Load (and so validate) the inputs before anything is written.

    Returns {"reference": RGBA [H, W, 4]} plus "sample" (ground truth: `sample=` or the synthetic
    subject) or "clip" (the user's driving video [F, H, W, 4], `video=file`).
    """
    sample = read_ground_truth(cfg)
    if sample is not None:
        return {"reference": sample.image, "sample": sample}
    clip = load_user_video(cfg) if cfg.video.source == "file" else None
    if cfg.image is not None:
        reference = load_reference_image(cfg.image, cfg.image_size, cfg.mask, cfg.border_ratio)
        return {"reference": reference} if clip is None else {"reference": reference, "clip": clip}
    if clip is not None:  # video-to-4D: the clip's first frame is the input image
        return {"reference": clip[0], "clip": clip}
    raise DynaPoseError(
        "no input: pass image=path/to/image.png, video=path/to/clip.mp4 (or a directory of frames), "
        "experiment=ground_truth sample=path/to/sample, or experiment=synthetic for the built-in subject"
    )


def rembg_need(cfg: DictConfig) -> str | None:
    """Why reading the inputs will need rembg's model (one line, with what to give instead), or None.

    Ground truth has its masks; an image or a clip needs rembg when it has no mask of its own
    (no alpha channel, or one opaque everywhere) and none is given. Reads the image (and a
    directory of frames), not rembg's model: the pre-flight looks for that before rembg loads it.
    """
    if cfg.synthetic is not None or cfg.sample is not None:
        return None
    if cfg.video.source == "file" and cfg.video.path is not None and cfg.video.masks is None:
        from .video_input import clip_without_masks

        need = clip_without_masks(cfg.video.path, cfg.video.max_frames, cfg.video.frame_step)
        if need is not None:
            return need
    if cfg.image is not None and cfg.mask is None:
        problem = missing_mask(open_image(cfg.image))
        return None if problem is None else f"{cfg.image} {problem}; or give {MASK_FIX}"
    return None


def read_ground_truth(cfg: DictConfig) -> Sample | None:
    """The run's ground-truth sample: `sample=<dir>`, or the synthetic subject rendered into one; None without."""
    if cfg.synthetic is not None:
        from .synthetic import build_sample, make_subject

        settings = cfg.synthetic
        subject = make_subject(settings.kind, settings.num_frames, settings.seed, settings.num_gaussians)
        every_frame = cfg.dynamic.prior == "oracle"  # the dynamic oracle needs training views at every frame
        return build_sample(subject, cfg.image_size, training_views_every_frame=every_frame,
                            name=f"{settings.kind}-{settings.seed}")  # fmt: skip
    if cfg.sample is not None:
        from .sample import load_sample

        return load_sample(cfg.sample)
    return None


def adopt_ground_truth(cfg: DictConfig, sample: Sample) -> None:
    """Train with the sample's own reference camera and image size, whatever the config said.

    The input image was taken from that camera, and held-out views are scored at the sample's
    cameras, so any other training camera would be measured against the wrong views.
    """
    reference, size = sample.reference, sample.image.shape[0]
    camera = cfg.static.camera
    wanted = {"elevation": reference.elevation, "static.camera.radius": reference.radius,
              "static.camera.fovy": reference.fovy, "image_size": size}  # fmt: skip
    given = {"elevation": cfg.elevation, "static.camera.radius": camera.radius,
             "static.camera.fovy": camera.fovy, "image_size": cfg.image_size}  # fmt: skip
    changed = [f"{key}={wanted[key]:g} (was {given[key]:g})" for key in wanted if wanted[key] != given[key]]
    if changed:
        log.info("ground truth %r: using its camera and size: %s", sample.name, ", ".join(changed))
    cfg.elevation, cfg.image_size = reference.elevation, size
    camera.radius, camera.fovy = reference.radius, reference.fovy


def ground_truth_problems(cfg: DictConfig, sample: Sample) -> list[str]:
    """What the oracle settings need from the sample and it lacks (one line each)."""
    problems = []
    if cfg.keypoints.source == "oracle" and sample.keypoints is None and "keypoints" in cfg.stages:
        problems.append("keypoints=oracle needs keypoints in sample.json (or use keypoints=track)")
    if "oracle" in (cfg.static.prior, cfg.dynamic.prior) and not sample.train_views:
        problems.append("the oracle prior needs training views (train_views in sample.json)")
    if cfg.dynamic.prior == "oracle" and len(sample.train_renders) != sample.num_frames:
        problems.append(
            "dynamic.prior=oracle needs training views at every frame (train_frames = num_frames); "
            "scripts/make_synthetic_sample.py every_frame=true writes them"
        )
    return [f"sample {sample.name!r}: {problem}" for problem in problems]


def load_user_video(cfg: DictConfig) -> torch.Tensor:
    """The user's driving clip (`video=file`) as RGBA frames [F, S, S, 4], framed once for the whole clip."""
    from .video_input import load_video_frames

    settings = cfg.video
    if settings.path is None:
        raise DynaPoseError("video.source=file needs a clip: pass video=path/to/clip.mp4 or a directory of frames")
    return load_video_frames(
        settings.path, cfg.image_size, cfg.border_ratio, settings.max_frames, settings.masks, settings.frame_step
    )


def input_fingerprint(cfg: DictConfig) -> dict:
    """What read_inputs makes input/ from, so that a resume can tell when the config names other inputs.

    Each input file it reads (files_fingerprint) and each setting that frames them, by config key; the
    synthetic subject by its settings. Only what read_inputs uses counts: a sample decides its own size
    (adopt_ground_truth), and `mask` goes with an image. {} when the config names no input (a resume
    without image=: nothing to compare with). Reads the files, no model.
    """
    if cfg.synthetic is not None:
        subject = {f"synthetic.{key}": value for key, value in cfg.synthetic.items()}
        return {**subject, "image_size": cfg.image_size, "training_views_every_frame": cfg.dynamic.prior == "oracle"}
    if cfg.sample is not None:
        return {"sample": files_fingerprint(cfg.sample)}
    named = {}
    if cfg.video.source == "file":
        video = cfg.video
        named |= {"video.path": files_fingerprint(video.path), "video.masks": files_fingerprint(video.masks),
                  "video.max_frames": video.max_frames, "video.frame_step": video.frame_step}  # fmt: skip
    if cfg.image is not None:
        named |= {"image": files_fingerprint(cfg.image), "mask": files_fingerprint(cfg.mask)}
    return {**named, "image_size": cfg.image_size, "border_ratio": cfg.border_ratio} if named else {}


def files_fingerprint(path) -> dict | None:
    """{"path", "size", "sha256"} of a file; {"path", "files": {relative path: {"size", "sha256"}}} of a
    directory; {"path"} alone when nothing is there; None for no path."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return {"path": str(path), **size_and_hash(path)}
    if path.is_dir():
        files = sorted(file for file in path.rglob("*") if file.is_file())
        return {"path": str(path), "files": {str(file.relative_to(path)): size_and_hash(file) for file in files}}
    return {"path": str(path)}


def size_and_hash(path: Path) -> dict:
    return {"size": path.stat().st_size, "sha256": sha256(path)}  # sha256 reads the file in chunks


def input_changes(recorded: dict, current: dict) -> list[str]:
    """How two input fingerprints differ, a phrase per key: "image: cat.png -> dog.png", "image_size 256 -> 128"."""
    changes = []
    for key in [*current, *(key for key in recorded if key not in current)]:
        before, now = recorded.get(key), current.get(key)
        if isinstance(before, dict) or isinstance(now, dict):
            change = file_change(before, now)
            changes += [f"{key}: {change}"] if change else []
        elif before != now:
            changes.append(f"{key} {before} -> {now}")
    return changes


def file_change(before: dict | None, now: dict | None) -> str | None:
    """How an input file changed ("cat.png -> dog.png", "cat.png changed"), None when its contents did not.

    By contents, not path: a renamed copy is the same input. A file gone since from the path it was
    read at is unchanged too: input/ holds the copy the run uses.
    """
    old, new = before or {"path": "none"}, now or {"path": "none"}
    gone = new.keys() == {"path"} and new["path"] == old["path"]
    if gone or {**old, "path": None} == {**new, "path": None}:
        return None
    return f"{old['path']} -> {new['path']}" if old["path"] != new["path"] else f"{old['path']} changed"


def write_inputs(inputs: dict, run: "Run") -> None:
    """Write input/reference.png, the synthetic ground truth or the user's clip (input/clip/NNN.png); mark DONE
    with inputs["fingerprint"] (input_fingerprint), what a resume compares its config's with."""
    directory = run.input_dir
    directory.mkdir(parents=True, exist_ok=True)
    if "clip" in inputs:
        save_png_frames(directory / "clip", inputs["clip"])
    if "sample" in inputs:
        from .sample import save_sample

        save_sample(inputs["sample"], run.ground_truth_dir)
    save_png(directory / "reference.png", inputs["reference"])
    mark_done(directory, {"inputs": inputs["fingerprint"]})
