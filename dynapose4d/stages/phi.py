"""phi as a run builds it: the field chosen, seeded, on the lifted support skeleton where the field needs one,
anchored, restored.

The dynamic stage trains it; the exports (dynapose4d/export) move meshes with the trained one,
so both build it here, the same way.

`dynamic/deformation=auto` (the default) chooses the field by what the keypoints stage found: the support
skeleton (deformation=skeleton) when the support points are joints (a keypoints.support file saying
"joints": true, or a ground-truth sample's joints), the hexplane when they were spread over the mask
(data/support.py), where an edge may cross a joint and the skeleton measured no gain (benchmarks/RESULTS.md,
issue 28), or are too few for a skeleton. `dynamic.loss.scl: null` takes the chosen field's own SCL weight,
its config's `scl_weight`.
"""

import logging

import torch
from omegaconf import DictConfig, OmegaConf

from ..cameras import reference_camera
from ..checkpoint import load_checkpoint
from ..data.support import SupportKeypoints
from ..deform import DEFORMATIONS, Deformation, build_deformation, normalised_time
from ..deform.anchored import AnchoredDeformation
from ..deform.skeleton import MIN_JOINTS, Rig
from ..errors import DynaPoseError
from ..gaussians import GaussianModel
from ..keypoints import lift_keypoints
from ..render import rasterize
from ..rules import WEIGHT, Variants
from ..run import Run

log = logging.getLogger(__name__)
AUTO = "auto"
WHEN_JOINTS, OTHERWISE = "when_joints", "otherwise"  # auto's branches: each one field's config


def deformation_schema() -> Variants:
    """dynamic.deformation's rules: each registered field's keys and its `scl_weight`, and auto's two branches."""
    fields = {entry.name: {**entry.schema, "scl_weight": WEIGHT} for entry in DEFORMATIONS}
    branches = {branch: Variants("name", **fields) for branch in (WHEN_JOINTS, OTHERWISE)}
    return Variants("name", **{AUTO: branches}, **fields)


def needs_support(field: DictConfig) -> bool:
    """Whether building the field `field` (dynamic.deformation) reads the support keypoints."""
    return field.name == AUTO or DEFORMATIONS[field.name].component.needs_rig


def chosen_settings(settings: DictConfig, support: SupportKeypoints | None) -> DictConfig:
    """The `dynamic` settings a run trains with: deformation=auto replaced by the field it picks for `support`,
    and a null loss.scl by the field's `scl_weight` (a copy, resolved; logged)."""
    chosen = OmegaConf.create(OmegaConf.to_container(settings, resolve=True))
    field = chosen.deformation
    if field.name == AUTO:
        if support is None:
            raise DynaPoseError("dynamic/deformation=auto chooses the field by the support keypoints: run the "
                                "keypoints stage, or choose one, e.g. dynamic/deformation=hexplane")  # fmt: skip
        field, reason = auto_choice(field, support)
        log.info("dynamic: deformation=auto chose %s: %s", field.name, reason)
    if chosen.loss.scl is None:
        chosen.loss.scl = field.scl_weight
        log.info("dynamic: SCL weight %g, %s's own (dynamic.loss.scl=... sets another)", field.scl_weight, field.name)
    chosen.deformation = field
    return chosen


def auto_choice(auto: DictConfig, support: SupportKeypoints) -> tuple[DictConfig, str]:
    """deformation=auto's field for `support` (one of its branches), and why."""
    if not support.joints:
        return auto[OTHERWISE], ('the support keypoints were spread over the mask, not placed on joints (a '
                                 'keypoints.support file saying "joints": true gets the skeleton)')  # fmt: skip
    if len(support.points) < MIN_JOINTS:
        return auto[OTHERWISE], f"{len(support.points)} support keypoints are too few for a skeleton ({MIN_JOINTS})"
    return auto[WHEN_JOINTS], "the support keypoints are joints"


def build_phi(cfg: DictConfig, settings: DictConfig, model: GaussianModel, support: SupportKeypoints | None,
              num_frames: int, joints: torch.Tensor | None = None) -> Deformation:  # fmt: skip
    """phi as the chosen `settings` (`chosen_settings`) describe it, around the static `model`: seeded, and on
    the support skeleton when the field `needs_rig`, with `joints` [N, 3] as trained (a checkpoint's), or else
    lifted onto the model now. Not anchored yet."""
    rig = None
    if DEFORMATIONS[settings.deformation.name].component.needs_rig:
        if joints is None:
            joints = lift_support(cfg, model, support)  # [N, 3]
            log.info("dynamic: %d support keypoints lifted onto the static model as the skeleton's joints",
                     len(joints))  # fmt: skip
        rig = Rig(joints, list(support.skeleton), num_frames, cfg.dynamic.anchor_frame)
    return seeded_deformation(settings.deformation, model.params["means"].detach(), cfg.seed, rig)


def seeded_deformation(settings: DictConfig, means: torch.Tensor, seed: int, rig: Rig | None = None) -> Deformation:
    """phi as `dynamic.deformation` describes it, around the canonical centres `means` [N, 3] (and on `rig`,
    for a field that needs one).

    Its initial weights come from the global RNG: seeding it here makes them independent of
    which stages ran before in this process (a resumed run, a sweep, the ablation).
    """
    torch.manual_seed(seed)
    return build_deformation(settings.name, settings, means, rig)


@torch.no_grad()
def lift_support(cfg: DictConfig, model: GaussianModel, support: SupportKeypoints) -> torch.Tensor:
    """The support keypoints lifted onto the static `model`: [N, 3] points on their viewing rays at the
    model's expected depth in the reference view (rendered at dynamic.render_size)."""
    size, camera = cfg.dynamic.render_size, cfg.static.camera
    device = model.params["means"].device
    view = reference_camera(size, size, camera.radius, camera.fovy, camera.elevation).to(device)
    colors, alphas, _ = rasterize(
        **model.activated(), viewmats=view.viewmats, Ks=view.Ks, width=size, height=size,
        render_mode="RGB+ED", backend=cfg.render.backend,
    )  # fmt: skip
    depth = colors[0, ..., 3:]  # [S, S, 1]
    return lift_keypoints(support_at(support, size).to(device), depth, alphas[0], view.viewmats[0], view.Ks[0])


def support_at(support: SupportKeypoints, size: int) -> torch.Tensor:
    """The support keypoints [N, 2] in the pixels of a `size`² render of the input image."""
    return support.points * size / support.image_size[1]


def anchored(field: Deformation, frame: int, num_frames: int) -> AnchoredDeformation:
    """`field` pinned to the identity at driving frame `frame` of `num_frames` (dynamic.anchor_frame)."""
    if frame >= num_frames:
        raise DynaPoseError(f"dynamic.anchor_frame={frame}, but the driving video has {num_frames} frames")
    return AnchoredDeformation(field, normalised_time(torch.tensor(float(frame)), num_frames).item())


def load_trained(state: dict, deformation: Deformation, model: GaussianModel) -> None:
    """A dynamic checkpoint's phi, and its Gaussians where they trained with phi (optimize_gaussians)."""
    deformation.load_state_dict(state["deformation"])
    if "model" in state:  # the Gaussians trained with phi; their number is the static model's
        with torch.no_grad():
            for key, value in state["model"].items():
                model.params[key].copy_(value)


@torch.no_grad()
def trained_motion(run: Run) -> tuple[GaussianModel, Deformation, int]:
    """The finished dynamic stage's canonical Gaussians and phi, on the CPU, and its number of driving frames:
    what an export moves. No prior is built, no weights are loaded and nothing is rendered: a rig's joints
    are the checkpoint's, so a run trained with render.backend=gsplat exports on a machine without CUDA."""
    path = run.checkpoint_path("dynamic")
    if not path.exists():
        raise DynaPoseError(f"no dynamic model at {path}: run the dynamic stage first")
    settings, model = run.cfg.dynamic, run.static_model()
    num_frames = len(run.driving_frames())
    support = run.keypoints()[0] if needs_support(settings.deformation) else None
    settings = chosen_settings(settings, support)
    state = load_checkpoint(path)
    joints = state["deformation"].get("field.joints", state["deformation"].get("joints"))  # anchored or free
    deformation = build_phi(run.cfg, settings, model, support, num_frames, joints)
    if settings.anchor_frame is not None:
        deformation = anchored(deformation, settings.anchor_frame, num_frames)
    try:
        load_trained(state, deformation, model)
    except (KeyError, RuntimeError) as error:  # another version's or another config's phi
        detail = f"{type(error).__name__}: {error}"
        raise DynaPoseError(f"{path} does not fit this run's dynamic settings ({detail})") from None
    return model, deformation.eval(), num_frames
