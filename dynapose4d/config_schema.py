"""What every setting of configs/train.yaml accepts, laid out like configs/ (a dict per config group).

validation.validate_settings checks a composed config against `train_schema()` before anything
runs. The components that register themselves (deformations, loss terms; registry.py) bring
their own schemas, which are read when the schema is assembled, after the plugins are imported. The
ranges are what the code that reads each setting needs (a count >= 1, a probability in [0, 1],
a learning rate >= 0); where the code allows more than the configs show, the rule allows it too.
Sets of choices come from the constants the code itself dispatches on, so they cannot drift.
"""

from .data.skeleton import JOINT_COUNT, SKELETONS
from .deform import DEFORMATIONS
from .priors import prior_choices
from .render import BACKENDS
from .rules import (
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
from .run import BACKGROUNDS
from .stages import STAGE_ORDER, video
from .stages.dynamic import KML_MODES
from .stages.terms import DYNAMIC_TERMS, STATIC_TERMS

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
    "ref_warmup": Choice(True, False, "auto"),  # stages/training.py reference_warmup_enabled
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
    "model": Nullable(MODEL),
    "sds": SDS,
    "views_per_frame": COUNT,
    "prior_chunk": COUNT,
    "ref_warmup": Choice(True, False, "auto"),
    "kml_mode": Choice(*KML_MODES),
    "neighbours": COUNT,
    "checkpoint_every": COUNT,
    "orbit_frames": COUNT,
}

# configs/experiment/synthetic.yaml sets `synthetic`: data/synthetic.py make_subject's arguments
SYNTHETIC = {
    "kind": Choice(*SKELETONS),
    "num_frames": COUNT,
    "num_gaussians": Integer(min=JOINT_COUNT),  # at least one per joint
    "seed": Integer(),
}


def train_schema() -> dict:
    """configs/train.yaml's schema: its own keys, then one entry per config group. Assembled when called, so
    that it holds every registered component, the plugins' too."""
    prior = Choice(*prior_choices())
    static = {**STATIC, "prior": prior, "loss": loss_schema(STATIC_TERMS)}
    dynamic = {
        **DYNAMIC,
        "prior": prior,
        "loss": loss_schema(DYNAMIC_TERMS),
        "deformation": Variants("name", **{entry.name: entry.schema for entry in DEFORMATIONS}),
    }
    return {**TRAIN, "static": static, "dynamic": dynamic}


def loss_schema(terms) -> dict:
    """`<stage>.loss`: a weight per registered term; 0 switches it off."""
    return {entry.name: WEIGHT for entry in terms}


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
    "stages": ListOf(Choice(*STAGE_ORDER), distinct=True),
    "plugins": ListOf(Text("a module name")),  # imported first: their components register (registry.py)
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
    "video": VIDEO,
    "keypoints": KEYPOINTS,
    "render": {"backend": Choice(*BACKENDS)},
}
