"""Static stage: the input image -> 3D Gaussians (DreamGaussian's recipe).

Each step fits the reference view to the image (RGB + mask, ramped up over the stage for
Zero123-XL) and scores `batch_size` random orbit views with the configured prior. The
novel views grow from 128² to 512² and are rendered over black or white at random; their
screen-space gradients drive DreamGaussian's densification. Writes
static/{checkpoint.pt, model.ply, renders/, DONE} and, with ground truth, metrics.
"""

import logging

import torch

from ..cameras import orbit_cameras, reference_camera
from ..checkpoint import load_checkpoint, non_finite
from ..data.image import composite, resize_square
from ..densify import Densifier
from ..eval.heldout import score_heldout
from ..gaussians import GaussianModel
from ..media import image_grid
from ..priors import Prior, PriorContext, ViewBatch, build_prior, draw_noise_seeds, prior_choices
from ..priors.zero123 import SDS_SETTINGS
from ..render import rasterize
from ..render.views import render_views, write_turntable
from ..rules import ANGLE, COUNT, LR, MODEL, SIZE, Choice, Integer, Nullable, Number, Pair, SizeSchedule
from ..run import Run
from ..schedules import exponential_lr, render_size
from . import STAGES
from .terms import STATIC_TERMS, StaticBatch, build_terms, loss_schema
from .training import TrainingStage

log = logging.getLogger(__name__)
NAME = "static"
# DreamGaussian starts every Gaussian grey: SH DC coefficients in [0, 1/255), colour within 0.0012 of 0.5.
DREAMGAUSSIAN_INIT_COLOR = 0.5
LOG_AZIMUTHS = (0, 90, 180, 270)  # the views of the model logged to TensorBoard
OUTPUTS = ("checkpoint.pt", "model.ply", "renders/grid.png", "renders/orbit.mp4")

# configs/static/default.yaml (its `prior` and `loss` are added when validated: see `settings_schema`)
SETTINGS = {
    "iterations": COUNT,
    "batch_size": COUNT,
    "num_points": COUNT,
    "init_radius": Number(above=0),
    "render_size": SIZE,
    "novel_view_sizes": SizeSchedule(),
    "black_background_prob": Number(0, 1),
    "model": Nullable(MODEL),
    "sds": SDS_SETTINGS,
    "prior_chunk": COUNT,
    "camera": {
        "radius": Number(above=0),
        "fovy": Number(above=0, below=180),
        "elevation": ANGLE,
        "elevation_range": Pair(Number(), ordered=True),  # relative to the reference view; clamped to +-80 in use
        "azimuth_range": Pair(Number(), ordered=True),
    },
    "ref_warmup": Choice(True, False, "auto"),  # training.reference_warmup_enabled
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


def settings_schema() -> dict:
    """`static.*`, with the priors and loss terms registered by now (the plugins' too)."""
    return {**SETTINGS, "prior": Choice(*prior_choices()), "loss": loss_schema(STATIC_TERMS)}


@STAGES.register(NAME, schema=settings_schema)
class StaticStage(TrainingStage):
    """Everything one static optimisation needs; TrainingStage runs its lifecycle."""

    name = NAME

    def __init__(self, run: Run, image: torch.Tensor, prior: Prior | None):
        """`image`: the RGBA input [H, W, 4] as the run framed it; `prior` scores the novel views (None: none)."""
        super().__init__(run, run.cfg.static)
        device, settings = self.device, self.settings
        size = settings.render_size
        reference = resize_square(image, size)  # [S, S, 4]
        self.background = run.background  # [3]
        self.target_rgb = composite(reference.to(device), self.background)[None]  # [1, S, S, 3]
        self.target_mask = reference[None, ..., 3:].to(device)  # [1, S, S, 1]
        camera = settings.camera
        self.reference_camera = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(device)
        self.prior = prior

        torch.manual_seed(self.cfg.seed)  # densification splits sample from the global RNG
        self.model = GaussianModel.from_sphere(
            settings.num_points, settings.init_radius, self.generator, color=DREAMGAUSSIAN_INIT_COLOR
        ).to(device)
        self.densifier = Densifier.from_dreamgaussian(**settings.densify)
        self._build_optimizers()
        self.terms = build_terms(STATIC_TERMS, self, settings.loss)
        self.restore()

    @classmethod
    def from_run(cls, run: Run) -> "StaticStage":
        """The stage on the run's input image, with the prior `static.prior` names."""
        settings, image = run.cfg.static, run.reference()  # [H, W, 4]
        context = PriorContext(settings, NAME, image[None], settings.camera, run.device, lambda: run.ground_truth)
        return cls(run, image, build_prior(context))

    # ----- Stage -----------------------------------------------------------------------

    @classmethod
    def verify(cls, run: Run) -> list[str]:
        """What is wrong with the stage's outputs: a model that is missing, unreadable or not finite."""
        stage_dir = run.stage_dir(NAME)
        problems = [f"{name} is missing" for name in OUTPUTS if not (stage_dir / name).exists()]
        if not problems:
            problems += non_finite(load_checkpoint(run.checkpoint_path(NAME))["model"], "checkpoint.pt")
        return problems

    def _build_optimizers(self) -> None:
        """One Adam per parameter, as gsplat's densification expects (checked)."""
        lrs = {key: value for key, value in self.settings.lr.items() if key != "means_final"}
        self.optimizers = self.model.make_optimizers(lrs)
        self.densifier.check(self.model, self.optimizers)

    # ----- TrainingStage's hooks --------------------------------------------------------

    def trainable(self) -> dict[str, torch.Tensor]:
        return dict(self.model.params)

    def named_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.optimizers

    def state_dict(self) -> dict:
        return {
            "model": {key: value.detach().cpu() for key, value in self.model.params.items()},
            "densifier": self.densifier.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])  # densification changed N: new Parameters, new optimizers
        self.model.to(self.device)
        self._build_optimizers()
        self.densifier.load_state_dict(state["densifier"])

    def write_outputs(self) -> None:
        write_static_outputs(self.run, self.model)

    # ----- optimisation -----------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        self._schedule_means_lr()
        gaussians = self.model.activated()
        size, backend = self.settings.render_size, self.cfg.render.backend
        colors, alphas, info = rasterize(
            **gaussians, viewmats=self.reference_camera.viewmats, Ks=self.reference_camera.Ks, width=size,
            height=size, backgrounds=self.background[None], backend=backend,
        )  # fmt: skip
        # clamped, as DreamGaussian's renderer returns every image (gs_renderer.py, render)
        batch = StaticBatch(colors.clamp(0, 1), alphas, torch.zeros(1, dtype=torch.long, device=self.device))
        if self.prior is not None:
            batch.views = views = self.sample_views()
            novel_colors, batch.novel_alphas, info = rasterize(
                **gaussians, viewmats=views.cameras.viewmats, Ks=views.cameras.Ks, width=views.cameras.width,
                height=views.cameras.height, backgrounds=views.backgrounds, backend=backend,
            )  # fmt: skip
            batch.novel_renders = novel_colors.clamp(0, 1)
        values, total = self.evaluate_terms(batch)
        # DreamGaussian's densification statistics come from the prior's views (see Densifier.from_dreamgaussian).
        dreamgaussian_step = self.step + 1
        self.densifier.step_pre_backward(self.model, self.optimizers, dreamgaussian_step, info)
        total.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.densifier.step_post_backward(self.model, self.optimizers, dreamgaussian_step, info)
        self.step += 1
        return {**{key: value.item() for key, value in values.items()}, "total": total.item()}

    def diagnostics(self) -> dict[str, float]:
        """TrainingStage's, and the Gaussian count."""
        return {**super().diagnostics(), "train/gaussians": self.model.num_gaussians}

    @torch.no_grad()
    def live_splats(self) -> list:
        from ..viewer import Splats

        return [Splats.of(self.model.activated())]

    @torch.no_grad()
    def images(self) -> dict[str, torch.Tensor]:
        """The reference render beside the input image, and the model from four sides."""
        gaussians = self.model.activated()
        backend = self.cfg.render.backend
        rendered = render_views(gaussians, self.reference_camera, self.background, backend)[0]  # [S, S, 3]
        camera, size = self.settings.camera, self.settings.render_size
        azimuths = torch.tensor(LOG_AZIMUTHS, dtype=torch.float32)
        sides = orbit_cameras(torch.zeros(len(azimuths)), azimuths, camera.radius, camera.fovy, size, size)
        views = render_views(gaussians, sides.to(self.device), self.background, backend)  # [4, S, S, 3]
        return {
            "reference/render_vs_input": torch.cat([rendered, self.target_rgb[0].cpu()], dim=1),
            "views/azimuth_0_90_180_270": image_grid(views, len(azimuths)),
        }

    def sample_views(self) -> ViewBatch:
        """`batch_size` random orbit views at this step's render size, each over black or white."""
        settings, camera = self.settings, self.settings.camera
        size = render_size(self.step, settings.iterations, settings.novel_view_sizes)
        cameras, elevations, azimuths, picks = self.prior.sample_cameras(
            settings.batch_size, size, self.generator, camera
        )
        black = torch.rand(settings.batch_size, generator=self.generator) < settings.black_background_prob  # [B]
        backgrounds = (~black).float()[:, None].expand(-1, 3).to(self.device)  # [B, 3] white or black
        seeds = draw_noise_seeds(settings.batch_size, self.step_generator())
        return ViewBatch(cameras.to(self.device), elevations, azimuths, camera.radius, backgrounds=backgrounds,
                         view_indices=picks, noise_seeds=seeds)  # fmt: skip

    def _schedule_means_lr(self) -> None:
        """DreamGaussian's exponential decay of the position learning rate, lr.means -> lr.means_final."""
        lr = self.settings.lr
        for group in self.optimizers["means"].param_groups:
            group["lr"] = exponential_lr(self.step, lr.means, lr.means_final, self.settings.iterations)


@torch.no_grad()
def write_static_outputs(run: Run, model: GaussianModel) -> None:
    """Model PLY, renders to look at, and held-out metrics at frame 0 when ground truth exists."""
    cfg, stage_dir = run.cfg, run.stage_dir(NAME)
    model.save_ply(stage_dir / "model.ply")
    gaussians = {key: value.detach() for key, value in model.activated().items()}
    write_turntable(stage_dir / "renders", gaussians, run.background, cfg, cfg.image_size, cfg.static.camera)
    sample = run.ground_truth
    if sample is not None:
        metrics = score_heldout(lambda frame: gaussians, sample, [0], run.background, cfg.render.backend)
        metrics["num_gaussians"] = model.num_gaussians
        run.record_metrics(NAME, metrics)
        log.info("static: held-out PSNR at frame 0 = %.2f dB", metrics["heldout_psnr"])
