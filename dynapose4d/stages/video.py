"""Video stage: the driving video, written as video/frames/NNN.png (RGBA) and driving.mp4.

Sources (`video=<source>`):
  svd     Stable Video Diffusion animates the input image (DreamGaussian4D's recipe);
  file    the user's own clip (video-to-4D), read and framed before the run started;
  oracle  the ground-truth sample's driving video (its reference view at every frame).

SVD's samples differ a lot from seed to seed, and DreamGaussian4D's authors pick one by eye.
`video.candidates=K` generates the seeds s ... s+K-1 into video/candidates/seed_<s>/ (frames
at SVD's resolution, driving.mp4, settings.json) beside one contact_sheet.png, and seed s's
video becomes the stage's output; s is `video.seed`, or when that is null the seed video/
already holds (a resume keeps the pick) or else the run's `seed`. A rerun reuses a candidate
whose settings match instead of calling SVD, and a finished stage that holds another seed's
video than an explicit `video.seed` is `outdated`: the pipeline redoes it and the stages made
from it.
SVD's frames have no alpha: masks come from rembg, as DreamGaussian4D makes them, or, the
stated fallback when rembg cannot load its model, from keying out the plain white background.
"""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw, ImageFont

from ..data.driving import save_driving_frames
from ..data.image import (
    WHITE,
    RembgUnavailable,
    composite,
    cut_out,
    key_out_background,
    load_reference_image,
    rembg_session,
    resize_square,
)
from ..errors import DynaPoseError
from ..media import image_grid, load_png, load_png_frames, save_png, save_png_frames, to_uint8, write_video
from ..pretrained import PretrainedModel
from ..rules import COUNT, FPS, MODEL, PATH, Boolean, Choice, Integer, Nullable, Number, Variants
from ..run import Run
from . import STAGES, Stage

log = logging.getLogger(__name__)
NAME = "video"
MASK_METHODS = ("auto", "rembg", "background")
CANDIDATES = "candidates"  # video/candidates/seed_<s>/ and contact_sheet.png
SELECTED = "selected.json"  # which seed's video video/frames/ holds
# What a candidate's frames depend on besides its seed: a candidate made with other values is regenerated.
GENERATION_KEYS = (
    "model", "num_frames", "steps", "fps", "motion_bucket_id", "noise_aug_strength", "decode_chunk_size",
    "height", "width", "pad",
)  # fmt: skip
SHEET_FRAMES = 5  # frames across a contact-sheet row: the first, the last and three between
SHEET_CELL = 160  # pixels on a side of one contact-sheet frame
SHEET_LABEL = 100  # pixels of the "seed N" column

# configs/video/<source>.yaml: video.source picks the file, and with it the keys
SETTINGS = Variants(
    "source",
    svd={
        "model": MODEL,
        "num_frames": Nullable(COUNT),
        "steps": COUNT,
        "fps": FPS,
        "motion_bucket_id": Number(min=0),
        "noise_aug_strength": Number(min=0),
        "decode_chunk_size": Nullable(COUNT),
        "height": COUNT,  # SVD's own multiple of 64 is checked when the model is loaded
        "width": COUNT,
        "pad": Boolean(),
        "seed": Nullable(Integer()),
        "candidates": COUNT,
        "cpu_offload": Boolean(),
        "forward_chunking": Boolean(),
        "mask": Choice(*MASK_METHODS),
    },
    file={
        "path": Nullable(PATH),  # null is reported by the input checks, which know whether input/ holds the clip
        "masks": Nullable(PATH),
        "max_frames": Nullable(COUNT),
        "frame_step": COUNT,
        "fps": FPS,
    },
    oracle={"fps": FPS},
)


@STAGES.register(NAME, schema=SETTINGS)
class VideoStage(Stage):
    """The driving video from its source; SVD's may be outdated by a changed video.seed."""

    name = NAME

    @classmethod
    def check(cls, cfg: DictConfig) -> list[PretrainedModel]:
        if cfg.video.source != "svd":
            return []
        from ..pretrained.svd import svd_weights

        return [svd_weights(cfg.video.model)]

    @classmethod
    def outdated(cls, run: Run) -> str | None:
        """Why the finished video/ no longer fits the config (it holds another seed than video.seed), or None."""
        cfg = run.cfg
        held = held_seed(run)
        if cfg.video.source != "svd" or cfg.video.seed is None or held in (None, cfg.video.seed):
            return None
        return f"video/ holds the video of seed {held} but video.seed={cfg.video.seed} is asked for"

    @classmethod
    def execute(cls, run: Run) -> None:
        source, stage_dir = run.cfg.video.source, run.stage_dir(NAME)
        if source == "oracle":
            frames = run.ground_truth.driving_video
        elif source == "file":
            frames = run.clip()
        else:
            seed = chosen_seed(run)
            frames = svd_video(run, seed)
        shutil.rmtree(stage_dir / "frames", ignore_errors=True)  # a redo must not keep frames of the video before
        save_driving_frames(stage_dir, frames, run.cfg.video.fps)
        if source == "svd":
            (stage_dir / SELECTED).write_text(json.dumps({"seed": seed}))

    @classmethod
    def verify(cls, run: Run) -> list[str]:
        """What is wrong with the outputs: no frames, frames of different sizes, or no driving.mp4."""
        stage_dir = run.stage_dir(NAME)
        problems = [] if (stage_dir / "driving.mp4").is_file() else ["driving.mp4 is missing"]
        sizes = set()
        for path in (stage_dir / "frames").glob("*.png"):
            with Image.open(path) as frame:  # reads the header only
                sizes.add(frame.size)
        if len(sizes) != 1:
            problems.append("frames/ holds no frames" if not sizes else f"frames/ mixes frame sizes {sorted(sizes)}")
        return problems


def held_seed(run: Run) -> int | None:
    """The seed of the SVD video in video/frames/, if any."""
    record = run.stage_dir(NAME) / SELECTED
    return json.loads(record.read_text())["seed"] if record.exists() else None


def chosen_seed(run: Run) -> int:
    """video.seed; when null, the seed video/ holds already (a resume keeps the pick), else the run's seed."""
    if run.cfg.video.seed is not None:
        return run.cfg.video.seed
    held = held_seed(run)
    return run.cfg.seed if held is None else held


def svd_video(run: Run, seed: int) -> torch.Tensor:
    """RGBA frames [F, S, S, 4] (S = image_size) of `seed`'s candidate; missing candidates are generated."""
    cfg = run.cfg
    settings = cfg.video
    directory = run.stage_dir(NAME) / CANDIDATES
    seeds = list(range(seed, seed + settings.candidates))
    missing = [each for each in seeds if read_settings(directory, each) != candidate_settings(settings, each)]
    if missing:
        generate_candidates(run, missing)
    if seed not in missing:
        log.info("video: reusing the video of seed %d in %s (no Stable Video Diffusion call)", seed, directory)
    sheet = write_contact_sheet(directory, seeds)
    if len(seeds) > 1:
        log.info(
            "video: %d candidates (seeds %d to %d) side by side in %s; the later stages use seed %d "
            "(resume=true video.seed=<s> picks another)", len(seeds), seeds[0], seeds[-1], sheet, seed,
        )  # fmt: skip
    video = load_png_frames(candidate_dir(directory, seed) / "frames")  # [F, H, H, 3]
    rgba = torch.cat([video, frame_masks(video, settings.mask)], dim=-1)  # [F, H, H, 4]
    return resize_square(rgba, cfg.image_size)


def candidate_dir(directory: Path, seed: int) -> Path:
    return directory / f"seed_{seed}"


def candidate_settings(settings: DictConfig, seed: int) -> dict:
    return {**{key: settings[key] for key in GENERATION_KEYS}, "seed": seed}


def read_settings(directory: Path, seed: int) -> dict | None:
    """The settings a finished candidate was made with; None when it is missing or was interrupted."""
    path = candidate_dir(directory, seed) / "settings.json"
    return json.loads(path.read_text()) if path.exists() else None


def generate_candidates(run: Run, seeds: list[int]) -> None:
    """SVD's video of each seed, written as a candidate as soon as it is made; SVD is loaded once for all."""
    from ..pretrained.svd import generate_driving_video, svd_pipeline

    settings = run.cfg.video
    image = svd_input(run)  # [H, H, 3]
    options = {"cpu_offload": settings.cpu_offload, "forward_chunking": settings.forward_chunking}
    with svd_pipeline(settings.model, run.device, **options) as pipe:
        for seed in seeds:
            log.info("video: generating the video of seed %d", seed)
            video = generate_driving_video(
                pipe,
                image,
                num_frames=settings.num_frames,
                steps=settings.steps,
                fps=settings.fps,
                motion_bucket_id=settings.motion_bucket_id,
                noise_aug_strength=settings.noise_aug_strength,
                decode_chunk_size=settings.decode_chunk_size,
                seed=seed,
                height=settings.height,
                width=settings.width,
                pad=settings.pad,
            )  # fmt: skip  [F, H, H, 3]
            candidate = candidate_dir(run.stage_dir(NAME) / CANDIDATES, seed)
            write_candidate(candidate, video, candidate_settings(settings, seed))


def svd_input(run: Run) -> torch.Tensor:
    """The input image [H, H, 3] on white at SVD's resolution (H = video.height), framed like the reference."""
    cfg = run.cfg
    height = cfg.video.height
    # The original file at SVD's resolution (the same recentring, so the same framing): upscaling the
    # saved 256² reference would blur the video.
    if cfg.image is not None:
        image = load_reference_image(cfg.image, height, cfg.mask, cfg.border_ratio)
    else:
        image = resize_square(run.reference(), height)
    return composite(image, WHITE)


def write_candidate(directory: Path, video: torch.Tensor, settings: dict) -> None:
    """frames/NNN.png and driving.mp4 of video [F, H, W, 3]; settings.json last, so it marks a whole candidate."""
    shutil.rmtree(directory, ignore_errors=True)  # a candidate of other settings, or an interrupted one
    save_png_frames(directory / "frames", video)
    write_video(directory / "driving.mp4", video, fps=settings["fps"])
    (directory / "settings.json").write_text(json.dumps(settings, indent=2))


def write_contact_sheet(directory: Path, seeds: list[int]) -> Path:
    """contact_sheet.png: one row per seed, labelled with it, SHEET_FRAMES frames across (first to last)."""
    rows = [sheet_row(candidate_dir(directory, seed) / "frames") for seed in seeds]  # [cell, frames * cell, 3] each
    sheet = Image.new("RGB", (SHEET_LABEL + rows[0].shape[1], SHEET_CELL * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=20)
    for index, (seed, row) in enumerate(zip(seeds, rows)):
        top = index * SHEET_CELL
        sheet.paste(Image.fromarray(to_uint8(row)), (SHEET_LABEL, top))
        draw.text((10, top + SHEET_CELL // 2 - 10), f"seed {seed}", fill="black", font=font)
        for left in range(SHEET_LABEL, sheet.width, SHEET_CELL):  # grey frames: the videos' white backgrounds meet
            draw.rectangle((left, top, left + SHEET_CELL - 1, top + SHEET_CELL - 1), outline=(200, 200, 200))
    path = directory / "contact_sheet.png"
    save_png(path, torch.from_numpy(np.asarray(sheet, np.float32) / 255))
    return path


def sheet_row(frames_dir: Path) -> torch.Tensor:
    """SHEET_FRAMES evenly spaced frames side by side [cell, SHEET_FRAMES * cell, 3]; white where there are fewer."""
    files = sorted(frames_dir.glob("*.png"))
    picks = torch.linspace(0, len(files) - 1, SHEET_FRAMES).round().long().unique()
    frames = torch.stack([load_png(files[index]) for index in picks])  # [C, H, H, 3]
    thumbnails = resize_square(frames, SHEET_CELL)  # [C, cell, cell, 3]
    return image_grid(thumbnails, SHEET_FRAMES, fill=1.0)


def frame_masks(video: torch.Tensor, method: str) -> torch.Tensor:
    """Object masks [F, H, W, 1] of SVD's frames [F, H, W, 3] on white: rembg's, or keyed out (the fallback)."""
    if method == "background":
        return key_out_background(video, WHITE)
    try:
        session = rembg_session()
    except RembgUnavailable as error:
        if method == "rembg":
            raise DynaPoseError(f"video.mask=rembg, but {error}") from None
        log.warning("video: %s; the frame masks come from keying out the white background instead", error)
        return key_out_background(video, WHITE)
    # DreamGaussian4D hands rembg OpenCV's BGR arrays; these go in as RGB, the order U²-Net was trained on.
    cut = cut_out([Image.fromarray(frame) for frame in to_uint8(video)], session)
    return torch.from_numpy(np.stack([np.asarray(frame, np.float32)[..., 3:] for frame in cut]) / 255)
