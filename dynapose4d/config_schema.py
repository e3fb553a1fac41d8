"""What every setting of configs/train.yaml accepts, laid out like configs/ (a dict per config group).

validation.validate_settings checks a composed config against TRAIN before anything runs. The
ranges are what the code that reads each setting needs (a count >= 1, a probability in [0, 1],
a learning rate >= 0); where the code allows more than the configs show, the rule allows it too.
Sets of choices come from the constants the code itself dispatches on, so they cannot drift.
"""

from omegaconf import DictConfig, OmegaConf

from .data.skeleton import JOINT_COUNT, SKELETONS
from .priors import PRIORS
from .render import BACKENDS
from .run import BACKGROUNDS
from .stages import dynamic, keypoints, motion_priors, static, video
from .validation import (
    AnyOf,
    Boolean,
    Choice,
    Integer,
    ListOf,
    Nullable,
    Number,
    Pair,
    Pattern,
    SizeSchedule,
    Text,
    Variants,
)

STAGES = (static.NAME, video.NAME, keypoints.NAME, dynamic.NAME)  # pipeline.stage_modules(), in run order
PATH = Text("a path")
MODEL = Text("a hub id or a local directory")
COUNT = Integer(min=1)
SIZE = Integer(min=8)  # pixels on a side of a render
WEIGHT = Number(min=0)  # a loss weight: 0 switches the term off
LR = Number(min=0)  # a learning rate: 0 freezes the parameter
ANGLE = Number(above=-90, below=90)  # an elevation in degrees: +-90 looks straight down and degenerates
FPS = Number(above=0)

# configs/static/default.yaml, and dynamic.sds (${static.sds} by default)
SDS = {
    "guidance_scale": Number(),  # classifier-free guidance: 0 is unconditional, below 0 pushes away from the image
    "max_timestep": Pair(Number(above=0, max=1)),  # [start, end] of T_max: decays from start to end, in either order
    "half_precision": Boolean(),
}
STATIC = {
    "iterations": COUNT,
    "batch_size": COUNT,
    "num_points": COUNT,
    "init_radius": Number(above=0),
    "render_size": SIZE,
    "novel_view_sizes": SizeSchedule(),
    "black_background_prob": Number(0, 1),
    "prior": Choice(*PRIORS),
    "model": Nullable(MODEL),
    "sds": SDS,
    "prior_chunk": COUNT,
    "camera": {
        "radius": Number(above=0),
        "fovy": Number(above=0, below=180),
        "elevation": ANGLE,
        "elevation_range": Pair(Number(), ordered=True),  # relative to the reference view; clamped to +-80 in use
        "azimuth_range": Pair(Number(), ordered=True),
    },
    "loss": {
        "ref_rgb": WEIGHT,
        "ref_mask": WEIGHT,
        "ref_warmup": Choice(True, False, "auto"),  # stages/static.py reference_warmup_enabled
        "prior": WEIGHT,
    },
    "lr": {key: LR for key in ("means", "means_final", "sh0", "opacities", "scales", "quats")},
    "densify": {  # DreamGaussian's units and 1-based steps (densify.py Densifier.from_dreamgaussian)
        "start": Integer(min=0),
        "stop": Integer(min=0),
        "every": COUNT,  # a modulus
        "grad_threshold": Number(min=0),
        "percent_dense": Number(min=0),
        "extent": Number(above=0),
        "min_opacity": Number(0, 1),
        "max_scale": Number(min=0),
        "opacity_reset_every": COUNT,  # a modulus
    },
    "checkpoint_every": COUNT,
    "orbit_views": COUNT,
}

# configs/video/<source>.yaml: video.source picks the file, and with it the keys
VIDEO = Variants(
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
        "mask": Choice(*video.MASK_METHODS),
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

# configs/keypoints/<source>.yaml
SUPPORT = {"support": Nullable(PATH), "num_keypoints": COUNT}
KEYPOINTS = Variants(
    "source",
    poseanything={"checkpoint": Text("a URL or a path"), **SUPPORT, "batch_size": COUNT},
    track={
        **SUPPORT,
        "window": Integer(min=3, odd=True),  # OpenCV's LK window has a centre pixel
        "levels": Integer(min=0),
        "fb_threshold": Number(above=0),
    },
    oracle={},
)

# configs/dynamic/default.yaml
DYNAMIC = {
    "iterations": COUNT,
    "batch_size": COUNT,
    "render_size": SIZE,
    "novel_view_sizes": SizeSchedule(),
    "optimize_gaussians": Boolean(),
    "anchor_frame": Nullable(Integer(min=0)),
    "lr": {key: LR for key in ("deformation", "means", "means_final", "sh0", "opacities", "scales", "quats")},
    "prior": Choice(*PRIORS),
    "model": Nullable(MODEL),
    "sds": SDS,
    "views_per_frame": COUNT,
    "prior_chunk": COUNT,
    "checkpoint_every": COUNT,
    "orbit_frames": COUNT,
}

# configs/deformation/<name>.yaml (the constructors' arguments, deform/hexplane.py and sparse_control.py)
DEFORMATION = Variants(
    "name",
    hexplane={
        "resolution": ListOf(Integer(min=2), length=4),  # x, y, z, t cells: a plane needs 2 to interpolate
        "multires": ListOf(COUNT, nonempty=True),
        "feature_dim": COUNT,
        "width": COUNT,
        "depth": COUNT,
        "bounds": Nullable(Number(above=0)),
        "bounds_padding": Number(min=0),
    },
    sparse_control={
        "num_controls": COUNT,
        "k_neighbors": COUNT,
        "width": COUNT,
        "depth": COUNT,
        "pos_freqs": Integer(min=0),
        "time_freqs": Integer(min=0),
        "init_radius_scale": Number(above=0),
    },
)

# configs/loss/default.yaml
LOSS = {
    "ref": {"rgb": Number(above=0), "mask": WEIGHT, "warmup": Boolean()},  # the dynamic stage divides by ref.rgb
    "kml": {"weight": WEIGHT, "mode": Choice(*dynamic.KML_MODES)},
    "scl": {"weight": WEIGHT},
    "sds": {"weight": WEIGHT},
    **{prior: {"weight": WEIGHT} for prior in motion_priors.PRIORS},
    "neighbours": COUNT,
}

# configs/experiment/synthetic.yaml sets `synthetic`: data/synthetic.py make_subject's arguments
SYNTHETIC = {
    "kind": Choice(*SKELETONS),
    "num_frames": COUNT,
    "num_gaussians": Integer(min=JOINT_COUNT),  # at least one per joint
    "seed": Integer(),
}

# configs/train.yaml: its own keys, then one entry per config group
TRAIN = {
    "image": Nullable(PATH),
    "mask": Nullable(PATH),
    "elevation": ANGLE,
    "border_ratio": Nullable(Number(min=0, below=1)),  # the object fills 1 - border_ratio of the frame
    "name": AnyOf(Text("a name"), Integer()),
    "seed": Integer(),
    "device": Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda or cuda:N"),
    "resume": Boolean(),
    "output_dir": PATH,
    "run_dir": Nullable(PATH),
    "stages": ListOf(Choice(*STAGES), distinct=True),
    "image_size": Integer(min=16),
    "background": Choice(*BACKGROUNDS),
    "synthetic": Nullable(SYNTHETIC),
    "sample": Nullable(PATH),
    "threads": AnyOf(Choice("auto"), Integer(min=1)),
    "weights_dir": Nullable(PATH),
    "log": {"tensorboard": Boolean(), "images_every": Integer(min=0)},
    "viewer": Boolean(),
    "viewer_host": Text("an address to listen on (127.0.0.1, 0.0.0.0)"),
    "viewer_port": Integer(min=0, max=65535),  # 0: any free port (printed)
    "viewer_every": COUNT,
    "static": STATIC,
    "video": VIDEO,
    "keypoints": KEYPOINTS,
    "dynamic": DYNAMIC,
    "deformation": DEFORMATION,
    "loss": LOSS,
    "render": {"backend": Choice(*BACKENDS)},
}

# Settings that need ground truth (the oracle sources and priors.build_prior)
NEEDS_GROUND_TRUTH = ("static.prior", "video.source", "keypoints.source", "dynamic.prior")


def combination_problems(cfg: DictConfig) -> list[str]:
    """Settings valid alone but not together: `oracle` needs ground truth, there is one input, and
    the plane priors need planes."""

    def value(key):
        return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)

    problems = []
    plane_priors = [f"loss.{name}.weight" for name in motion_priors.PLANE_PRIORS if value(f"loss.{name}.weight")]
    if plane_priors and value("deformation.name") != "hexplane":
        problems.append(f"  {', '.join(plane_priors)} > 0: regularise the hexplane's planes, use deformation=hexplane")
    synthetic, sample = value("synthetic") is not None, value("sample") is not None
    if synthetic and sample:
        problems.append("  sample and experiment=synthetic both give the ground truth: keep one")
    elif sample and value("image") is not None:
        problems.append("  image and sample both give the input image: a sample's input is its image.png")
    elif not (synthetic or sample):
        problems += [
            f"  {key}='oracle': needs ground truth: experiment=ground_truth sample=DIR, or experiment=synthetic"
            for key in NEEDS_GROUND_TRUTH
            if value(key) == "oracle"
        ]
    return problems
