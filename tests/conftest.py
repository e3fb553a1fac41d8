"""Shared test setup: marker skips and composing the Hydra config the way scripts/train.py does."""

import contextlib
import os
import signal
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

# `import rembg` imports pymatting, whose numba kernels compile on first import in a fresh venv
# (91 s on the 2-core CI machine, measured). The pipeline never runs them (rembg's alpha
# matting stays off), so the tests, and the scripts they start, import them uncompiled.
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


CPU = torch.device("cpu")
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")

# The smallest settings that still exercise every part of every stage (densification included),
# in a few seconds on 2 CPU cores: on any ground-truth sample, and on the synthetic subject.
TINY_TRAINING = [
    "static.iterations=6",
    "static.batch_size=2",
    "static.num_points=300",
    "static.render_size=48",
    "static.checkpoint_every=2",
    "static.orbit_views=4",
    "static.novel_view_sizes=[[0,32],[0.5,48]]",
    "static.densify.start=2",
    "static.densify.every=2",
    "static.densify.stop=4",
    "dynamic.iterations=4",
    "dynamic.batch_size=2",
    "dynamic.render_size=48",
    "dynamic.novel_view_sizes=[[0,32],[0.5,48]]",
    "dynamic.checkpoint_every=2",
    "dynamic.orbit_frames=4",
    "dynamic.deformation.otherwise.resolution=[16,16,16,2]",  # deformation=auto's hexplane
    "dynamic.deformation.when_joints.residual.resolution=[8,8,8,2]",  # and its skeleton's residual
]
TINY_SYNTHETIC = ["experiment=synthetic", "image_size=48", "synthetic.num_frames=2", "synthetic.num_gaussians=400",
                  *TINY_TRAINING]  # fmt: skip


def compose_config(overrides: list[str]):
    """The config scripts/train.py would build for these command-line overrides."""
    from dynapose4d.cli import expand_shortcuts

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=expand_shortcuts(overrides))


@pytest.fixture
def tiny_synthetic_config(tmp_path):
    def build(*extra: str):
        overrides = TINY_SYNTHETIC
        if any(item.startswith("dynamic/deformation=") for item in extra):  # another field: auto's keys go
            overrides = [item for item in overrides if not item.startswith("dynamic.deformation.")]
        return compose_config([*overrides, f"output_dir={tmp_path / 'outputs'}", *extra])

    return build


@pytest.fixture
def dynamic_stage(tiny_synthetic_config, tmp_path):
    """`dynamic_stage(*overrides, detector=...)`: a DynamicStage built from tensors, no stage run first.

    The synthetic subject itself stands in for the earlier stages: its Gaussians at frame 0 are
    the static model, its reference-view renders the driving video and its projected joints the
    keypoints, as the oracle video and keypoints would give them. The prior is built as from_run
    builds it, and kml_mode=render gets the template detector keypoints=oracle gets, unless
    `detector` is given.
    """
    from dynapose4d.data.support import SupportKeypoints
    from dynapose4d.data.synthetic import build_sample, make_subject
    from dynapose4d.gaussians import GaussianModel
    from dynapose4d.priors import PriorContext, build_prior
    from dynapose4d.run import Run
    from dynapose4d.stages.dynamic import DynamicStage, template_detector
    from dynapose4d.stages.phi import build_phi, chosen_settings

    def build(*overrides: str, detector=None) -> DynamicStage:
        cfg = tiny_synthetic_config(*overrides)
        subject = make_subject(cfg.synthetic.kind, cfg.synthetic.num_frames, cfg.synthetic.seed,
                               cfg.synthetic.num_gaussians)  # fmt: skip
        sample = build_sample(subject, cfg.image_size, eval_azimuths=(90,))
        model = GaussianModel.from_tensors(subject.gaussians_at(0))
        tracks = sample.keypoints.frames  # [T, N, 2]
        names, bones, joints = sample.keypoints.names, sample.keypoints.bones, sample.keypoints.joints
        support = SupportKeypoints(tracks[0], bones, names, (cfg.image_size,) * 2, joints)
        keypoints = (support, tracks, torch.ones(tracks.shape[:2]))
        settings = chosen_settings(cfg.dynamic, support)
        deformation = build_phi(cfg, settings, model, support, len(sample.driving_video))
        if detector is None and cfg.dynamic.kml_mode == "render":
            detector = template_detector(sample.image, support, cfg.dynamic.render_size, CPU)
        prior = build_prior(PriorContext(cfg.dynamic, "dynamic", sample.driving_video, cfg.static.camera, CPU))
        run = Run(cfg, tmp_path / "parts", CPU)
        return DynamicStage(run, settings, model, sample.driving_video, deformation, prior, keypoints, detector)

    return build


@pytest.fixture
def ctrl_c_at():
    """`with ctrl_c_at(StageClass, step): run(...)`: a real Ctrl-C (SIGINT) during the step after `step`.

    The stage finishes that step, saves it and stops: the block must end in KeyboardInterrupt
    (training.Stopped). The stage class is restored afterwards.
    """

    @contextlib.contextmanager
    def interrupt(trainer_class, step: int):
        original = trainer_class.train_step

        def train_step(trainer):
            if trainer.step == step:
                os.kill(os.getpid(), signal.SIGINT)
            return original(trainer)

        trainer_class.train_step = train_step
        try:
            with pytest.raises(KeyboardInterrupt):
                yield
        finally:
            trainer_class.train_step = original

    return interrupt


def local_weights(model) -> Path:
    """The local directory of a real pretrained model (hub cache or path), or skip the test."""
    from dynapose4d.errors import DynaPoseError
    from dynapose4d.pretrained import resolve_pretrained

    try:
        return resolve_pretrained(model, local_only=True)
    except DynaPoseError:
        pytest.skip(f"{model.name} weights not available locally ({model.location})")


@pytest.fixture(scope="session")
def tiny_zero123_dir(tmp_path_factory) -> Path:
    """Randomly initialised tiny Zero123 components in the hub repos' on-disk layout."""
    from dynapose4d.pretrained.zero123_random import write_random_zero123

    return write_random_zero123(tmp_path_factory.mktemp("zero123") / "tiny-zero123")


@pytest.fixture(scope="session")
def tiny_svd_dir(tmp_path_factory) -> Path:
    """Randomly initialised tiny Stable Video Diffusion components in the hub repos' layout."""
    from dynapose4d.pretrained.svd_random import write_random_svd

    return write_random_svd(tmp_path_factory.mktemp("svd") / "tiny-svd")


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """No network and an empty cache for huggingface_hub (which reads its settings once, at import)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


@pytest.fixture(scope="session")
def tiny_cape_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised PoseAnything (Tiny) saved like the official mmcv checkpoints."""
    from dynapose4d.pretrained.poseanything import build_cape

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cape") / "poseanything-tiny-random.pth"
    torch.save({"state_dict": build_cape("tiny").state_dict(), "meta": {"epoch": 0}}, path)
    return path
