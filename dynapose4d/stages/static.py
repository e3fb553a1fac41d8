"""Static stage: the input image -> 3D Gaussians (DreamGaussian's recipe).

Each step fits the reference view to the image (RGB + mask, ramped up over the stage for
Zero123-XL) and scores `batch_size` random orbit views with the configured prior. The
novel views grow from 128² to 512² and are rendered over black or white at random; their
screen-space gradients drive DreamGaussian's densification. Writes
static/{checkpoint.pt, model.ply, renders/, DONE} and, with ground truth, metrics.
"""

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from ..cameras import reference_camera, sample_orbit_cameras
from ..checkpoint import load_checkpoint, mark_done, save_checkpoint
from ..data.image import composite, resize_square
from ..data.inputs import background_color, load_reference, synthetic_sample, synthetic_subject
from ..densify import Densifier
from ..errors import DynaPoseError
from ..evaluation import evaluate_frames
from ..gaussians import GaussianModel
from ..metrics import update_metrics_file
from ..pretrained import PretrainedModel
from ..priors import ViewBatch, build_prior, prior_weights
from ..render import rasterize
from ..schedules import exponential_lr, reference_warmup, render_size, step_ratio
from .loop import run_training
from .outputs import write_turntable

log = logging.getLogger(__name__)
NAME = "static"
# DreamGaussian starts every Gaussian grey: SH DC coefficients in [0, 1/255), colour within 0.0012 of 0.5.
DREAMGAUSSIAN_INIT_COLOR = 0.5


class StaticTrainer:
    """Holds everything one static optimisation needs, so it can be checkpointed whole."""

    def __init__(self, cfg: DictConfig, run_dir: Path, device: torch.device):
        self.cfg, self.settings, self.device = cfg, cfg.static, device
        self.stage_dir = run_dir / NAME
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        size = self.settings.render_size
        image = load_reference(run_dir)  # [H, W, 4]
        reference = resize_square(image, size)  # [S, S, 4]
        self.background = background_color(cfg).to(device)  # [3]
        self.target_rgb = composite(reference.to(device), self.background)  # [S, S, 3]
        self.target_mask = reference[..., 3:].to(device)  # [S, S, 1]
        camera = self.settings.camera
        self.reference_camera = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(device)
        self.prior = build_prior(self.settings, NAME, image[None], camera, device, synthetic_subject(cfg))
        self.ref_warmup = reference_warmup_enabled(self.settings)

        self.generator = torch.Generator().manual_seed(cfg.seed)  # view and background sampling
        torch.manual_seed(cfg.seed)  # densification splits sample from the global RNG
        self.model = GaussianModel.from_sphere(
            self.settings.num_points, self.settings.init_radius, self.generator, color=DREAMGAUSSIAN_INIT_COLOR
        )
        self.step = 0
        checkpoint_path = self.stage_dir / "checkpoint.pt"
        checkpoint = load_checkpoint(checkpoint_path) if cfg.resume and checkpoint_path.exists() else None
        if checkpoint is not None:
            self.model.load_state_dict(checkpoint["model"])
        self.model.to(device)
        lrs = {key: value for key, value in self.settings.lr.items() if key != "means_final"}
        self.optimizers = self.model.make_optimizers(lrs)
        self.densifier = Densifier.from_dreamgaussian(**self.settings.densify)
        self.densifier.check(self.model, self.optimizers)  # one Adam per trainable parameter
        if checkpoint is not None:
            self._restore(checkpoint)
            log.info("static: resumed at step %d from %s", self.step, checkpoint_path)

    # ----- checkpointing ----------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model": {key: value.detach().cpu() for key, value in self.model.params.items()},
            "optimizers": {key: optimizer.state_dict() for key, optimizer in self.optimizers.items()},
            "densifier": self.densifier.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def _restore(self, checkpoint: dict) -> None:
        self.step = checkpoint["step"]
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(checkpoint["optimizers"][key])
        self.densifier.load_state_dict(checkpoint["densifier"])
        self.generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])

    def save(self) -> None:
        save_checkpoint(self.state_dict(), self.stage_dir / "checkpoint.pt")

    # ----- optimisation -----------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        settings, iterations = self.settings, self.settings.iterations
        self._schedule_means_lr()
        gaussians = self.model.activated()
        size = settings.render_size
        colors, alphas, info = rasterize(
            **gaussians, viewmats=self.reference_camera.viewmats, Ks=self.reference_camera.Ks, width=size,
            height=size, backgrounds=self.background[None], backend=self.cfg.render.backend,
        )  # fmt: skip
        warmup = reference_warmup(self.step, iterations, self.ref_warmup)
        losses = {
            "ref_rgb": warmup * F.mse_loss(colors[0], self.target_rgb),
            "ref_mask": warmup * F.mse_loss(alphas[0], self.target_mask),
        }
        if self.prior is not None:
            views = self.sample_views()
            novel_colors, novel_alphas, info = rasterize(
                **gaussians, viewmats=views.cameras.viewmats, Ks=views.cameras.Ks, width=views.cameras.width,
                height=views.cameras.height, backgrounds=views.backgrounds, backend=self.cfg.render.backend,
            )  # fmt: skip
            losses["prior"] = self.prior.loss(novel_colors, novel_alphas, views, step_ratio(self.step, iterations))
        # DreamGaussian's densification statistics come from the prior's views (see Densifier.from_dreamgaussian).
        dreamgaussian_step = self.step + 1
        self.densifier.step_pre_backward(self.model, self.optimizers, dreamgaussian_step, info)
        total = sum(settings.loss[key] * value for key, value in losses.items())
        total.backward()
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.densifier.step_post_backward(self.model, self.optimizers, dreamgaussian_step, info)
        self.step += 1
        return {**{key: value.item() for key, value in losses.items()}, "gaussians": self.model.num_gaussians}

    def sample_views(self) -> ViewBatch:
        """`batch_size` random orbit views at this step's render size, each over black or white."""
        settings, camera = self.settings, self.settings.camera
        size = render_size(self.step, settings.iterations, settings.novel_view_sizes)
        cameras, elevations, azimuths = sample_orbit_cameras(
            settings.batch_size, self.generator, camera.elevation_range, camera.azimuth_range,
            camera.radius, camera.fovy, size, size, reference_elevation=camera.elevation,
        )  # fmt: skip
        black = torch.rand(settings.batch_size, generator=self.generator) < settings.black_background_prob  # [B]
        backgrounds = (~black).float()[:, None].expand(-1, 3).to(self.device)  # [B, 3] white or black
        return ViewBatch(cameras.to(self.device), elevations, azimuths, camera.radius, backgrounds=backgrounds)

    def _schedule_means_lr(self) -> None:
        """DreamGaussian's exponential decay of the position learning rate, lr.means -> lr.means_final."""
        lr = self.settings.lr
        for group in self.optimizers["means"].param_groups:
            group["lr"] = exponential_lr(self.step, lr.means, lr.means_final, self.settings.iterations)


def reference_warmup_enabled(settings: DictConfig) -> bool:
    """`loss.ref_warmup`: true | false | auto, DreamGaussian's choice per prior (on only for Zero123-XL)."""
    choice = settings.loss.ref_warmup
    if choice == "auto":
        return settings.prior == "zero123"
    if isinstance(choice, bool):
        return choice
    raise DynaPoseError(f"static.loss.ref_warmup must be true, false or auto, got {choice!r}")


def check(cfg: DictConfig) -> list[PretrainedModel]:
    return prior_weights(cfg.static, NAME)


def run(cfg: DictConfig, run_dir: Path, device: torch.device) -> None:
    trainer = StaticTrainer(cfg, run_dir, device)
    run_training(trainer, cfg.static.iterations, cfg.static.checkpoint_every, NAME)
    finish(cfg, run_dir, trainer.model)
    mark_done(trainer.stage_dir)


@torch.no_grad()
def finish(cfg: DictConfig, run_dir: Path, model: GaussianModel) -> None:
    """Model PLY, renders to look at, and held-out metrics at frame 0 when ground truth exists."""
    stage_dir = run_dir / NAME
    model.save_ply(stage_dir / "model.ply")
    gaussians = {key: value.detach() for key, value in model.activated().items()}
    background = background_color(cfg).to(model.params["means"].device)
    write_turntable(stage_dir / "renders", gaussians, background, cfg, cfg.image_size, cfg.static.camera)
    sample = synthetic_sample(cfg, run_dir)
    if sample is not None:
        metrics = evaluate_frames(lambda frame: gaussians, sample, [0], background, cfg.render.backend)
        metrics["num_gaussians"] = model.num_gaussians
        update_metrics_file(run_dir, NAME, metrics)
        log.info("static: held-out PSNR at frame 0 = %.2f dB", metrics["heldout_psnr"])
