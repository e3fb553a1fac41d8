"""docs/ARCHITECTURE.md's worked examples, run: each adds a toy component in a module of its own, outside the
package, names it in the config, and trains two steps with it. If an example in the document stops working,
so does its test.

Each module is written to a temporary directory on sys.path and imported by the pipeline through the
`plugins` setting, as a researcher's own module would be. The registries are restored afterwards.
"""

import json
import textwrap

import pytest
import torch
from conftest import TINY_SYNTHETIC, compose_config

from dynapose4d.deform import DEFORMATIONS
from dynapose4d.pipeline import run
from dynapose4d.priors import PRIORS
from dynapose4d.stages import STAGES, Stage, stage_order
from dynapose4d.stages.terms import DYNAMIC_TERMS, STATIC_TERMS
from dynapose4d.validation import SettingsError

# "Add a loss": a term that keeps the deformed Gaussians near the canonical ones.
TOY_LOSS = '''
import torch

from dynapose4d.stages.terms import DYNAMIC_TERMS


@DYNAMIC_TERMS.register("toy_stillness")
def toy_stillness(stage):
    """Mean squared displacement of the Gaussians from their canonical centres."""
    return lambda batch: torch.stack([g["means"] for g in batch.deformed]).sub(stage.canonical_means).square().mean()
'''

# "Add a deformation": every Gaussian moves by one offset per time, linearly interpolated.
TOY_DEFORMATION = """
import torch

from dynapose4d.deform import DEFORMATIONS, Deformation
from dynapose4d.rules import Integer


@DEFORMATIONS.register("toy_translation", schema={"bins": Integer(min=2)})
class TranslationDeformation(Deformation):
    def __init__(self, means: torch.Tensor, bins: int = 4):  # means [N, 3]: the canonical centres
        super().__init__()
        self.offsets = torch.nn.Parameter(torch.zeros(bins, 3))  # [bins, 3]: the identity at the start

    def offset(self, t: torch.Tensor) -> torch.Tensor:  # t [B] in [-1, 1] -> [B, 1, 3]
        position = (t + 1) / 2 * (len(self.offsets) - 1)
        low = position.floor().long().clamp(max=len(self.offsets) - 2)
        weight = (position - low)[:, None]
        return ((1 - weight) * self.offsets[low] + weight * self.offsets[low + 1])[:, None]

    def forward(self, means, quats, log_scales, t):
        batch = len(t)
        moved = means + self.offset(t)  # [B, N, 3]
        return moved, quats.expand(batch, -1, -1), log_scales.expand(batch, -1, -1)

    def motion_points(self, means, t):
        return means + self.offset(t)

    def rest_points(self, means):
        return means
"""
TOY_DEFORMATION_CONFIG = "name: toy_translation\nscl_weight: 10000.0\nbins: 4\n"

# "Add a prior": novel views should be half grey, a stand-in for a real score.
TOY_PRIOR = """
import torch

from dynapose4d.priors import PRIORS, Prior


@PRIORS.register("toy_grey")
class GreyPrior(Prior):
    @classmethod
    def build(cls, context):
        return cls()

    def loss(self, colors, alphas, views, step_ratio):  # colors [B, H, W, 3]: the mean over views of each's term
        return (colors.mean(dim=(1, 2, 3)) - 0.5).square().mean()
"""

# "Add a stage": after the static stage, how much of the reference view its model covers.
TOY_STAGE = """
import json

from dynapose4d.cameras import reference_camera
from dynapose4d.render import rasterize
from dynapose4d.rules import Integer
from dynapose4d.stages import STAGES, Stage


@STAGES.register("coverage", schema={"size": Integer(min=8)})
class CoverageStage(Stage):
    name = "coverage"
    after = ("static",)  # it reads the static model

    @classmethod
    def check(cls, cfg):
        return []  # no pretrained model to locate

    @classmethod
    def execute(cls, run):
        gaussians = run.static_model().to(run.device).activated()
        size, camera = run.cfg.coverage.size, run.cfg.static.camera
        view = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(run.device)
        _, alphas, _ = rasterize(**gaussians, viewmats=view.viewmats, Ks=view.Ks, width=size, height=size,
                                 backend=run.cfg.render.backend)
        run.stage_dir("coverage").mkdir(exist_ok=True)
        (run.stage_dir("coverage") / "coverage.json").write_text(json.dumps({"coverage": alphas.mean().item()}))

    @classmethod
    def verify(cls, run):
        return [] if (run.stage_dir("coverage") / "coverage.json").exists() else ["coverage.json is missing"]
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """`plugin(name, source)`: a module on sys.path for `plugins=[name]`; registries restored at the end."""
    for registry in (DYNAMIC_TERMS, STATIC_TERMS, DEFORMATIONS, PRIORS, STAGES):
        registry.names()  # the package's own components first, so the copy holds them
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    directory = tmp_path / "plugins"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))

    def write(name: str, source: str) -> str:
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(__import__("sys").modules, name, raising=False)
        return name

    return write


def losses_header(run_dir, stage: str) -> list[str]:
    return (run_dir / "tb" / stage / "losses.csv").read_text().splitlines()[0].split(",")


def test_add_a_loss(tiny_synthetic_config, plugin):
    module = plugin("toy_stillness_loss", TOY_LOSS)
    # configs/dynamic/default.yaml would gain `toy_stillness: 0.5` under loss:; here the same entry, appended
    config = tiny_synthetic_config(f"plugins=[{module}]", "+dynamic.loss.toy_stillness=0.5", "dynamic.iterations=2")
    run_dir = run(config)
    assert "loss/toy_stillness" in losses_header(run_dir, "dynamic")
    assert (run_dir / "dynamic" / "DONE").exists()


def test_add_a_deformation(plugin, tmp_path):
    module = plugin("toy_translation_field", TOY_DEFORMATION)
    configs = tmp_path / "configs" / "dynamic" / "deformation"  # beside configs/dynamic/deformation/hexplane.yaml
    configs.mkdir(parents=True)
    (configs / "toy_translation.yaml").write_text(TOY_DEFORMATION_CONFIG)
    tiny = [override for override in TINY_SYNTHETIC if "deformation" not in override]  # auto's sizes
    config = compose_config([
        *tiny, f"output_dir={tmp_path / 'outputs'}", f"plugins=[{module}]",
        f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "dynamic/deformation=toy_translation",
        "dynamic.iterations=2",
    ])  # fmt: skip
    run_dir = run(config)
    state = torch.load(run_dir / "dynamic" / "checkpoint.pt", weights_only=False)["deformation"]
    # dynamic.anchor_frame=0 wraps it (deform/anchored.py); trained, it moved off the identity
    assert set(state) == {"field.offsets", "anchor_time"} and state["field.offsets"].abs().sum() > 0


def test_add_a_prior(tiny_synthetic_config, plugin):
    module = plugin("toy_grey_prior", TOY_PRIOR)
    config = tiny_synthetic_config(f"plugins=[{module}]", "static.prior=toy_grey", "static.iterations=2",
                                   "stages=[static]")  # fmt: skip
    run_dir = run(config)
    header = losses_header(run_dir, "static")
    assert "loss/prior" in header and (run_dir / "static" / "DONE").exists()


def test_add_a_stage(tiny_synthetic_config, plugin, tmp_path):
    module = plugin("toy_coverage_stage", TOY_STAGE)
    configs = tmp_path / "configs" / "coverage"  # a config group of its own, like configs/video/
    configs.mkdir(parents=True)
    (configs / "default.yaml").write_text("size: 32\n")
    config = tiny_synthetic_config(
        f"plugins=[{module}]", f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "+coverage=default",
        "stages=[coverage,static]", "static.iterations=2",
    )  # fmt: skip
    run_dir = run(config)
    order = [stage.name for stage in stage_order()]
    assert order.index("coverage") > order.index("static")  # its `after`, whatever the order of `stages=`
    coverage = json.loads((run_dir / "coverage" / "coverage.json").read_text())["coverage"]
    assert 0 < coverage < 1 and (run_dir / "coverage" / "DONE").exists() and (run_dir / "static" / "DONE").exists()
    with pytest.raises(SettingsError, match=r"coverage.size=4: must be an integer >= 8"):
        run(tiny_synthetic_config(f"plugins=[{module}]", f"hydra.searchpath=[file://{tmp_path / 'configs'}]",
                                  "+coverage=default", "coverage.size=4", "stages=[static,coverage]"))  # fmt: skip


def toy_stage(name: str, after: tuple[str, ...]) -> type[Stage]:
    class ToyStage(Stage):
        check = classmethod(lambda cls, cfg: [])
        execute = classmethod(lambda cls, run: None)
        verify = classmethod(lambda cls, run: [])

    ToyStage.name, ToyStage.after = name, after
    return ToyStage


@pytest.mark.parametrize(
    "afters, message",
    [
        ({"toy_a": ("toy_b",), "toy_b": ("toy_a",)}, "the stages toy_a, toy_b each run after another of them"),
        ({"toy_c": ("nowhere",)}, "stage toy_c runs after nowhere, which no module registers"),
    ],
)
def test_a_stage_order_that_cannot_be_kept_is_named(plugin, afters, message):
    from dynapose4d.errors import DynaPoseError

    for name, after in afters.items():  # into the copy of the registry that `plugin` restores
        STAGES.register(name)(toy_stage(name, after))
    with pytest.raises(DynaPoseError, match=message):
        stage_order()


def test_an_unknown_component_names_the_choices(tiny_synthetic_config):
    from dynapose4d.errors import DynaPoseError

    choices = "none, oracle, stable_zero123, zero123"
    with pytest.raises(SettingsError, match=f"static.prior='toy_missing': must be one of {choices}"):
        run(tiny_synthetic_config("static.prior=toy_missing"))
    with pytest.raises(DynaPoseError, match=r"plugins: cannot import 'no_such_module'"):
        run(tiny_synthetic_config("plugins=[no_such_module]"))
