"""Dynamic stage: a deformation network phi(S, t) animates the static Gaussians (paper eq. 2).

Each step samples a batch of driving frames, deforms the static Gaussians to those
times, renders them at the reference view (and at random novel views when a prior is
set) and minimises

    L = L_Ref (eq. 3) + w_kml L_KML (eq. 4) + w_scl L_SCL (eq. 5) + w_prior SDS    (PAL = KML + SCL)
        + the motion priors enabled in `dynamic.loss` (rigidity, isometry, ARAP, plane TV, time smoothness)

where SDS conditions Zero123 on each view's driving frame (DreamGaussian4D) and the motion
priors hold what the reference view cannot see: depth and stretch. Each term is a function
registered in terms/ and weighted by its entry in `dynamic.loss` (terms/__init__.py).

Writes dynamic/{checkpoint.pt, renders/{reference,orbit}.mp4, frames/NNN.ply, DONE} and,
with ground truth, held-out metrics at every frame.
"""

import logging
from collections.abc import Callable

import torch
from omegaconf import DictConfig

from ..cameras import Cameras, orbit_cameras, reference_camera
from ..checkpoint import load_checkpoint, non_finite
from ..data.driving import draw_keypoints
from ..data.image import WHITE, composite, resize_square
from ..data.support import SupportKeypoints
from ..deform import Deformation, normalised_time
from ..errors import DynaPoseError
from ..eval.heldout import score_heldout
from ..eval.motion import keypoint_error_3d
from ..gaussians import GaussianModel
from ..keypoints import TemplateMatchingDetector, project_points
from ..media import write_video
from ..priors import Prior, PriorContext, ViewBatch, build_prior, draw_noise_seeds, prior_choices
from ..priors.zero123 import SDS_SETTINGS
from ..render import rasterize
from ..render.views import ORBIT_ELEVATION, render_views
from ..rules import COUNT, LR, MODEL, SIZE, WEIGHT, Boolean, Choice, Integer, Nullable, SizeSchedule
from ..run import Run
from ..schedules import exponential_lr, render_size
from . import STAGES
from .keypoints import load_detector
from .phi import (
    anchored,
    build_phi,
    chosen_settings,
    deformation_schema,
    lift_support,
    load_trained,
    needs_support,
    support_at,
)
from .terms import DYNAMIC_TERMS, DynamicBatch, build_terms, loss_schema
from .training import TrainingStage

log = logging.getLogger(__name__)
NAME = "dynamic"
KML_MODES = ("lift", "render")
OUTPUTS = ("checkpoint.pt", "renders/reference.mp4", "renders/orbit.mp4")
Keypoints = tuple[SupportKeypoints, torch.Tensor, torch.Tensor]  # support, per frame [T, N, 2], visibility [T, N]


# configs/dynamic/default.yaml (its `prior`, `loss` and `deformation` are added when validated: `settings_schema`)
SETTINGS = {
    "iterations": COUNT,
    "batch_size": COUNT,
    "render_size": SIZE,
    "novel_view_sizes": SizeSchedule(),
    "optimize_gaussians": Boolean(),
    "anchor_frame": Nullable(Integer(min=0)),
    "lr": {key: LR for key in ("deformation", "means", "means_final", "sh0", "opacities", "scales", "quats")},
    "model": Nullable(MODEL),
    "sds": SDS_SETTINGS,
    "views_per_frame": COUNT,
    "prior_chunk": COUNT,
    "ref_warmup": Choice(True, False, "auto"),
    "kml_mode": Choice(*KML_MODES),
    "neighbours": COUNT,
    "checkpoint_every": COUNT,
    "orbit_frames": COUNT,
    "export_mesh": Boolean(),
}


def settings_schema() -> dict:
    """`dynamic.*`, with the priors, loss terms and deformations registered by now (the plugins' too)."""
    return {
        **SETTINGS,
        "prior": Choice(*prior_choices()),
        "loss": {**loss_schema(DYNAMIC_TERMS), "scl": Nullable(WEIGHT)},  # null: the field's own (stages/phi.py)
        "deformation": deformation_schema(),
    }


@STAGES.register(NAME, schema=settings_schema)
class DynamicStage(TrainingStage):
    """The static model (trained with phi by default, as DG4D), the deformation network and their optimiser."""

    name = NAME
    after = ("static", "video", "keypoints")

    def __init__(
        self,
        run: Run,
        settings: DictConfig,  # run.cfg.dynamic with the field chosen and the SCL weight set (phi.chosen_settings)
        model: GaussianModel,  # the static Gaussians: the canonical model phi deforms
        frames: torch.Tensor,  # [T, H, W, 4] the driving video, RGBA
        deformation: Deformation,  # phi around the model's centres; anchored here when dynamic.anchor_frame is set
        prior: Prior | None = None,  # scores the novel views; None for dynamic.prior=none
        keypoints: Keypoints | None = None,  # the keypoints stage's output: needed when dynamic.loss.kml > 0
        detector: Callable | None = None,  # renders [B, S, S, 3] -> keypoints [B, N, 2], for kml_mode=render
    ):
        super().__init__(run, settings)
        cfg, device = self.cfg, self.device
        size = self.settings.render_size
        scale = size / frames.shape[1]  # keypoints are in driving-frame pixels
        frames = resize_square(frames, size).to(device)
        self.num_frames = len(frames)
        self.background = run.background  # [3]
        self.target_rgb = composite(frames, self.background)  # [T, S, S, 3]
        self.target_mask = frames[..., 3:]  # [T, S, S, 1]
        camera = cfg.static.camera
        self.camera = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(device)
        self.prior = prior
        self.model = model.to(device)
        self.model.requires_grad_(self.settings.optimize_gaussians)
        self.deformation = deformation
        if deformation.needs_rig and self.settings.loss.kml > 0 and self.settings.kml_mode == "render":
            log.warning("dynamic: deformation=%s with kml_mode=render: the keypoint loss reaches the pose through the "
                        "renders only; kml_mode=lift compares the posed joints directly (benchmarks/RESULTS.md, "
                        "issue 28)", self.settings.deformation.name)  # fmt: skip
        if self.settings.anchor_frame is not None:
            self.deformation = anchored(self.deformation, self.settings.anchor_frame, self.num_frames)
        self.deformation.to(device)
        if self.settings.loss.kml > 0:
            self._prepare_keypoint_match(keypoints, detector, scale)
        self.terms = build_terms(DYNAMIC_TERMS, self, self.settings.loss)
        self.optimizer = torch.optim.Adam(self._param_groups())
        self.restore()

    @classmethod
    def from_run(cls, run: Run) -> "DynamicStage":
        """The stage on the static model, driving video and keypoints the run's earlier stages wrote."""
        settings, device = run.cfg.dynamic, run.device
        frames = run.driving_frames()  # [T, H, W, 4]
        context = PriorContext(settings, NAME, frames, run.cfg.static.camera, device, lambda: run.ground_truth)
        prior = build_prior(context)
        model = run.static_model().to(device)
        keypoints = detector = None
        if settings.loss.kml > 0 or needs_support(settings.deformation):  # else the keypoints stage may be skipped
            keypoints = run.keypoints()
        support = None if keypoints is None else keypoints[0]
        settings = chosen_settings(settings, support)
        deformation = build_phi(run.cfg, settings, model, support, len(frames))
        if settings.loss.kml > 0 and settings.kml_mode == "render":
            detector = keypoint_detector(run, support)
        return cls(run, settings, model, frames, deformation, prior, keypoints, detector)

    # ----- Stage ----------------------------------------------------------------------------

    @classmethod
    def verify(cls, run: Run) -> list[str]:
        """What is wrong with the outputs: files missing, a PLY per driving frame, a finite checkpoint."""
        stage_dir = run.stage_dir(NAME)
        problems = [f"{name} is missing" for name in OUTPUTS if not (stage_dir / name).exists()]
        frames, plys = len(run.driving_frames()), len(list((stage_dir / "frames").glob("*.ply")))
        if plys != frames:
            problems.append(f"frames/ holds {plys} PLY files for {frames} driving frames")
        if not problems:
            checkpoint = load_checkpoint(run.checkpoint_path(NAME))
            problems += non_finite({key: checkpoint[key] for key in ("deformation", "model") if key in checkpoint},
                                   "checkpoint.pt")  # fmt: skip
        return problems

    # ----- deformed Gaussians ---------------------------------------------------------------

    @property
    def canonical_means(self) -> torch.Tensor:
        """[N, 3] the static Gaussians' centres now (they train with phi when optimize_gaussians), detached."""
        return self.model.params["means"].detach()

    def deformed(self, frames: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Activated Gaussians at each frame index in `frames` [B]."""
        raw, static = self.model.params, self.model.activated()
        t = normalised_time(frames.float(), self.num_frames).to(self.device)
        means, quats, log_scales = self.deformation(raw["means"], static["quats"], raw["scales"], t)
        return [
            {**static, "means": means[b], "quats": quats[b], "scales": torch.exp(log_scales[b])}
            for b in range(len(frames))
        ]

    def _prepare_keypoint_match(self, keypoints: Keypoints | None, detector: Callable | None, scale: float) -> None:
        """Driving keypoints at render size, and the lifted support points or the detector KML compares them to."""
        if keypoints is None:
            raise DynaPoseError("dynamic.loss.kml > 0 needs the keypoints stage's output; or set dynamic.loss.kml=0")
        support, tracks, visibility = keypoints
        self.keypoints = (tracks * scale).to(self.device)  # [T, N, 2]
        self.skeleton = support.skeleton
        self.keypoint_visibility = visibility.to(self.device)  # [T, N] 0 where tracking lost a point
        if self.settings.kml_mode == "lift" and self.deformation.needs_rig:
            self.lifted_keypoints = self.deformation.joints  # [N, 3] the rig: the support points lifted as joints
        elif self.settings.kml_mode == "lift":
            self.lifted_keypoints = lift_support(self.cfg, self.model, support).to(self.device)  # [N, 3]
        elif detector is None:
            raise DynaPoseError("dynamic.kml_mode=render needs a detector for the renders; or dynamic.kml_mode=lift")
        else:
            self.detector = detector

    def _param_groups(self) -> list[dict]:
        """phi's groups (hexplane: planes at 10x), then one group per Gaussian parameter when they train (DG4D)."""
        lr = self.settings.lr
        groups = self.deformation.param_groups(lr.deformation)
        if self.settings.optimize_gaussians:
            groups += [
                {"params": [parameter], "lr": lr[name], "name": name} for name, parameter in self.model.params.items()
            ]
        return groups

    def _schedule_means_lr(self) -> None:
        """DG4D's exponential position schedule, lr.means -> lr.means_final; phi's rates stay constant (as DG4D's)."""
        lr = self.settings.lr
        for group in self.optimizer.param_groups:
            if group.get("name") == "means":
                group["lr"] = exponential_lr(self.step, lr.means, lr.means_final, self.settings.iterations)

    # ----- optimisation ---------------------------------------------------------------------

    def sample_frames(self) -> torch.Tensor:
        """A batch of distinct frame indices [B] (all frames when the batch is at least T)."""
        count = min(self.settings.batch_size, self.num_frames)
        return torch.randperm(self.num_frames, generator=self.generator)[:count].sort().values

    def sample_views(self, frames: torch.Tensor) -> ViewBatch:
        """`views_per_frame` random orbit views for each frame in `frames` [B], grouped by frame, over white (DG4D)."""
        camera, settings = self.cfg.static.camera, self.settings
        size = render_size(self.step, settings.iterations, settings.novel_view_sizes)
        count = settings.views_per_frame * len(frames)
        cameras, elevations, azimuths, picks = self.prior.sample_cameras(count, size, self.generator, camera)
        repeated = frames.repeat_interleave(settings.views_per_frame)  # [B * V]
        backgrounds = WHITE.to(self.device).expand(count, 3)  # [B * V, 3]
        seeds = draw_noise_seeds(count, self.step_generator())
        return ViewBatch(
            cameras.to(self.device), elevations, azimuths, camera.radius, repeated, backgrounds, picks, seeds
        )

    def render(self, deformed: list[dict[str, torch.Tensor]], views: ViewBatch | None):
        """Per deformed frame, the reference view and (in a second call, at their own size) that frame's novel views.

        Returns reference renders [B, S, S, 3] and alphas [B, S, S, 1], then the novel views'
        [B * V, s, s, 3] and [B * V, s, s, 1] (None without `views`).
        """
        per_view, backend = self.settings.views_per_frame, self.cfg.render.backend
        reference, novel = [], []
        for index, gaussians in enumerate(deformed):
            reference.append(render_cameras(gaussians, self.camera, self.background[None], backend))
            if views is not None:
                chosen = slice(index * per_view, (index + 1) * per_view)
                novel.append(render_cameras(gaussians, views.cameras[chosen], views.backgrounds[chosen], backend))
        colors, alphas = torch.cat([c for c, _ in reference]), torch.cat([a for _, a in reference])
        if views is None:
            return colors, alphas, None, None
        return colors, alphas, torch.cat([c for c, _ in novel]), torch.cat([a for _, a in novel])

    def train_step(self) -> dict[str, float]:
        self._schedule_means_lr()
        frames = self.sample_frames()
        views = self.sample_views(frames) if self.prior is not None else None
        deformed = self.deformed(frames)
        renders, alphas, novel_renders, novel_alphas = self.render(deformed, views)
        t = normalised_time(frames.float(), self.num_frames).to(self.device)
        values, total = self.evaluate_terms(
            DynamicBatch(renders, alphas, frames, views, novel_renders, novel_alphas, t, deformed)
        )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        return {**{key: value.item() for key, value in values.items()}, "total": total.item()}

    @torch.no_grad()
    def live_splats(self) -> list:
        from ..viewer import Splats

        return [Splats.of(gaussians) for gaussians in self.deformed(torch.arange(self.num_frames))]

    @torch.no_grad()
    def images(self) -> dict[str, torch.Tensor]:
        """The reference render beside the driving frame at the first and last frame; with KML, the
        keypoints on both (driving: the keypoints stage's; render: the deformed model's)."""
        frames = torch.tensor([0, self.num_frames - 1])
        renders, alphas, _, _ = self.render(self.deformed(frames), None)  # [2, S, S, 3], [2, S, S, 1]
        targets = self.target_rgb[frames]  # [2, S, S, 3]
        images = {
            f"reference/frame_{frame}_render_vs_driving": torch.cat([render, target], dim=1).cpu()
            for frame, render, target in zip(frames.tolist(), renders, targets)
        }
        if hasattr(self, "keypoints"):
            predicted = self.predicted_keypoints(frames, renders, alphas)  # [2, N, 2]
            visible = self.keypoint_visibility[frames].cpu()
            drawn_render = draw_keypoints(renders.cpu(), predicted.cpu(), self.skeleton, visible)
            drawn_driving = draw_keypoints(targets.cpu(), self.keypoints[frames].cpu(), self.skeleton, visible)
            for frame, render, target in zip(frames.tolist(), drawn_render, drawn_driving):
                images[f"keypoints/frame_{frame}_render_vs_driving"] = torch.cat([render, target], dim=1)
        return images

    def moved_points(self, points: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Points [P, 3] of the canonical model carried by phi to each frame index in `frames` [B]: [B, P, 3]."""
        t = normalised_time(frames.float(), self.num_frames).to(self.device)
        return self.deformation.deform_points(points.to(self.device), t)

    def predicted_keypoints(self, frames: torch.Tensor, renders: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """The deformed model's keypoints [B, N, 2] at `frames`: lifted points moved by phi, or found on `renders`
        [B, S, S, 3] (over the run's background, with coverage `alphas` [B, S, S, 1])."""
        if self.settings.kml_mode == "lift":
            t = normalised_time(frames.float(), self.num_frames).to(self.device)
            points = self.deformation.keypoints_at(self.lifted_keypoints, t)  # [B, N, 3]
            batch = len(frames)
            return project_points(points, self.camera.viewmats.expand(batch, 4, 4), self.camera.Ks.expand(batch, 3, 3))
        # The detector saw the driving frames and the support image over white: so must the renders, or its
        # bias stops cancelling between the two sides of eq. 4 (with background=black, say).
        return self.detector(renders + (1 - alphas) * (WHITE.to(renders) - self.background.to(renders)))

    # ----- TrainingStage's hooks ------------------------------------------------------------

    def trainable(self) -> dict[str, torch.Tensor]:
        phi = {f"deformation.{key}": value for key, value in self.deformation.named_parameters()}
        return {**phi, **self.model.params} if self.settings.optimize_gaussians else phi

    def named_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adam": self.optimizer}

    def state_dict(self) -> dict:
        state = {"deformation": self.deformation.state_dict()}
        if self.settings.optimize_gaussians:
            state["model"] = {key: value.detach().cpu() for key, value in self.model.params.items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        load_trained(state, self.deformation, self.model)

    def write_outputs(self) -> None:
        write_dynamic_outputs(self)


def render_cameras(gaussians: dict, cameras: Cameras, backgrounds: torch.Tensor, backend: str):
    """Colours [C, H, W, 3] in [0, 1] and alphas [C, H, W, 1] of activated `gaussians` at `cameras` over
    `backgrounds` [C, 3]; clamped, as DreamGaussian4D's renderer returns every image it trains on."""
    colors, alphas, _ = rasterize(
        **gaussians, viewmats=cameras.viewmats, Ks=cameras.Ks, width=cameras.width, height=cameras.height,
        backgrounds=backgrounds, backend=backend,
    )  # fmt: skip
    return colors.clamp(0, 1), alphas


def keypoint_detector(run: Run, support: SupportKeypoints) -> Callable:
    """What finds the keypoints on the renders for kml_mode=render: the model that found the driving keypoints
    (PoseAnything), or else template matching around the support points of the input image."""
    if run.cfg.keypoints.source == "poseanything":
        return load_detector(run, support)
    return template_detector(run.reference(), support, run.cfg.dynamic.render_size, run.device)


def template_detector(image: torch.Tensor, support: SupportKeypoints, size: int, device) -> TemplateMatchingDetector:
    """Template matching around the support points of the RGBA input `image` [H, W, 4], at `size`² renders."""
    reference = composite(resize_square(image, size).to(device), WHITE.to(device))  # over white, as the renders
    return TemplateMatchingDetector(reference, support_at(support, size).to(device))


@torch.no_grad()
def write_dynamic_outputs(stage: DynamicStage) -> None:
    """Reference and orbit videos over time, per-frame PLY files, and held-out metrics at every frame."""
    run, cfg = stage.run, stage.cfg
    stage_dir = run.stage_dir(NAME)
    frames = list(range(stage.num_frames))
    per_frame = [{key: value.detach() for key, value in g.items()} for g in stage.deformed(torch.tensor(frames))]
    problems = [problem for frame, g in zip(frames, per_frame) for problem in non_finite(g, f"frame {frame}")]
    if problems:  # a finite phi can still send a Gaussian to infinity at a time it never trained on
        raise DynaPoseError(f"dynamic: the deformed Gaussians are not finite ({problems[0]}); nothing was written")
    (stage_dir / "frames").mkdir(exist_ok=True)
    for frame, gaussians in zip(frames, per_frame):
        GaussianModel.from_tensors(gaussians).save_ply(stage_dir / "frames" / f"{frame:03d}.ply")

    size, camera, backend = cfg.image_size, cfg.static.camera, cfg.render.backend
    background = stage.background
    reference = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(stage.device)
    reference_video = torch.cat([render_views(g, reference, background, backend) for g in per_frame])
    (stage_dir / "renders").mkdir(exist_ok=True)
    write_video(stage_dir / "renders" / "reference.mp4", reference_video, fps=cfg.video.fps)
    count = cfg.dynamic.orbit_frames  # the camera turns once while time loops through the clip
    azimuths = torch.arange(count, dtype=torch.float32) * 360.0 / count
    orbit = orbit_cameras(torch.full((count,), ORBIT_ELEVATION), azimuths, camera.radius, camera.fovy, size, size)
    orbit_video = torch.cat(
        [
            render_views(per_frame[i % len(per_frame)], orbit[i].to(stage.device), background, backend)
            for i in range(count)
        ]
    )
    write_video(stage_dir / "renders" / "orbit.mp4", orbit_video, fps=cfg.video.fps)
    if cfg.dynamic.export_mesh:  # scripts/export.py does the same for a finished run
        from ..export.animated import export_animated_mesh  # trimesh and pygltflib load only when asked for

        mesh_dir = stage_dir / "mesh"
        export_animated_mesh(stage.model, stage.deformation, stage.num_frames, cfg.mesh, mesh_dir, cfg.video.fps,
                             cfg.mesh.format)  # fmt: skip

    sample = run.ground_truth
    if sample is not None:
        metrics = score_heldout(lambda frame: per_frame[frame], sample, frames, background, backend)
        truth = None if sample.keypoints is None else sample.keypoints.frames3d  # [T, N, 3]
        if truth is not None:
            metrics["keypoint_error_3d"], metrics["per_frame"]["keypoint_error_3d"] = keypoint_error_3d(
                stage.moved_points, truth, frames
            )
        run.record_metrics(NAME, metrics)
        motion = "" if truth is None else f", 3D keypoint error {metrics['keypoint_error_3d']:.4f}"
        log.info(
            "dynamic: held-out PSNR over %d frames = %.2f dB (reference view %.2f dB%s)",
            len(frames), metrics["heldout_psnr"], metrics["reference_psnr"], motion,
        )  # fmt: skip
