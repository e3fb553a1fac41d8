"""What every setting of configs/train.yaml accepts, laid out like configs/ (a dict per config group).

validation.validate_settings checks a composed config against `train_schema()` before anything
runs. Only the run's own keys are written here: every component that registers itself (a
stage, a deformation, a loss term, a prior; registry.py) brings the schema of its settings,
read when the schema is assembled, after the plugins are imported. The ranges are what the code
that reads each setting needs (a count >= 1, a probability in [0, 1], a learning rate >= 0);
where the code allows more than the configs show, the rule allows it too. Sets of choices come
from the constants the code itself dispatches on, so they cannot drift.
"""

from .data.skeleton import JOINT_COUNT
from .data.synthetic import KINDS
from .export import FORMATS as MESH_FORMATS
from .render import BACKENDS
from .rules import ANGLE, COUNT, PATH, AnyOf, Boolean, Choice, Integer, ListOf, Nullable, Number, Pattern, Text
from .run import BACKGROUNDS
from .stages import STAGES, stage_order

# configs/experiment/synthetic.yaml sets `synthetic`: data/synthetic.py make_subject's arguments
SYNTHETIC = {
    "kind": Choice(*KINDS),
    "num_frames": COUNT,
    "num_gaussians": Integer(min=JOINT_COUNT),  # at least one per joint
    "seed": Integer(),
}

# configs/mesh/default.yaml: dynapose4d/export's settings
MESH = {
    "resolution": Integer(min=8),
    "threshold": Number(above=0),
    "face_budget": Nullable(Integer(min=4)),
    "min_piece_fraction": Number(min=0, below=1),
    "format": Choice(*MESH_FORMATS),
}

# configs/train.yaml's own keys, and the groups that belong to no stage
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
    "render": {"backend": Choice(*BACKENDS)},
    "mesh": MESH,
}


def train_schema() -> dict:
    """configs/train.yaml's schema: its own keys, `stages`, then each registered stage's group. Assembled when
    called, so that it holds every registered component, the plugins' too."""
    stages = {stage.name: STAGES[stage.name].schema for stage in stage_order()}
    return {**TRAIN, "stages": ListOf(Choice(*stages), distinct=True), **stages}
