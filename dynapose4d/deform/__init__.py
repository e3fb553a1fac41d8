"""Deformation fields phi(S, t) of DynaPose4D (eq. 2: S'_tau = phi(S, tau)).

A deformation maps the canonical (static) Gaussians to their state at normalised
time t in [-1, 1] (t spans the whole clip, see `normalised_time`). The fields share one
interface, so the dynamic stage and the losses never need to know which one runs:

    hexplane        DreamGaussian4D's field: the K-planes / 4DGaussians hexplane
                    feature grid plus small MLP heads (`hexplane.py`)
    sparse_control  SC4D's sparse control nodes with a motion MLP, skinned to the
                    Gaussians by linear blending of rigid transforms (`sparse_control.py`)
    skeleton        the support skeleton's bones, posed per frame by forward kinematics and
                    skinned to the Gaussians, plus a small residual hexplane (`skeleton.py`);
                    built on a `Rig` (the lifted support keypoints), so `needs_rig`

All are exactly the identity at initialisation (zero-initialised outputs), so
the dynamic stage starts from the static result. A field registers itself where it is defined,
with the schema of its settings, and has a config file in configs/dynamic/deformation/:

    @DEFORMATIONS.register("hexplane", schema={"resolution": ListOf(Integer(min=2), length=4), ...})
    class HexPlaneDeformation(Deformation): ...
"""

from collections.abc import Mapping
from typing import ClassVar

import torch

from ..errors import DynaPoseError
from ..registry import Registry

# name -> the field and its settings' schema; every module of this package is imported on first use
DEFORMATIONS = Registry("deformation", __name__)
NOT_ARGUMENTS = ("name", "scl_weight")  # keys of a field's config that are not its constructor's


def normalised_time(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Frame indices tau in {0..T-1} (fractional allowed) -> t = 2 tau / (T - 1) - 1 in [-1, 1].

    The end frames map to -1 and 1 exactly, so the field's time axis is fully used
    (4DGaussians feeds [0, 1] and wastes half of it, their issue #251). T = 1 gives 0.
    """
    frames = torch.as_tensor(frames, dtype=torch.float32)
    if num_frames <= 1:
        return torch.zeros_like(frames)
    return 2.0 * frames / (num_frames - 1) - 1.0


class Deformation(torch.nn.Module):
    """Base class: canonical Gaussians + a batch of times -> deformed Gaussians per time."""

    needs_rig: ClassVar[bool] = False  # built on the lifted support skeleton: the constructor takes `rig`

    def forward(
        self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deform N canonical Gaussians to B times.

        Args:
            means: [N, 3] canonical centres.
            quats: [N, 4] canonical unit quaternions (wxyz).
            log_scales: [N, 3] log standard deviations.
            t: [B] normalised times in [-1, 1] (see `normalised_time`).

        Returns:
            means [B, N, 3], unit quats [B, N, 4], log_scales [B, N, 3].
        """
        raise NotImplementedError

    def motion_points(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[B, M, 3] points whose trajectories the spatio-temporal consistency loss (eq. 5) smooths."""
        raise NotImplementedError

    def rest_points(self, means: torch.Tensor) -> torch.Tensor:
        """[M, 3] the canonical positions of `motion_points` (the ARAP prior's rest pose)."""
        raise NotImplementedError

    def param_groups(self, lr: float) -> list[dict]:
        """Adam parameter groups at base learning rate `lr`; fields whose parts need different rates override it."""
        return [{"params": list(self.parameters()), "lr": lr, "name": "deformation"}]

    def deform_points(self, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Move arbitrary points [P, 3] (e.g. lifted keypoints) with the field: [B, P, 3].

        A point is a Gaussian with identity rotation and unit scale; both fields move a
        centre independently of its rotation and scale, so this is the field itself.
        """
        quats = torch.zeros(points.shape[0], 4, dtype=points.dtype, device=points.device)  # [P, 4]
        quats[:, 0] = 1.0
        return self(points, quats, torch.zeros_like(points), t)[0]

    def keypoints_at(self, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The lifted support keypoints [P, 3] at times `t`: [B, P, 3]. A field carries them as any point;
        one built on them (the skeleton's joints) gives its own posed joints."""
        return self.deform_points(points, t)


def build_deformation(name: str, settings: Mapping, means: torch.Tensor, rig=None) -> Deformation:
    """The deformation registered as `name` for canonical centres `means` [N, 3].

    `settings` is its config group (dynamic.deformation): every key but `name` and `scl_weight` (the SCL
    weight the dynamic stage trains it with) is a constructor argument, checked against the field's
    registered schema before the run starts. A field that
    `needs_rig` also takes `rig` (skeleton.Rig), the support skeleton lifted onto the static model.
    """
    field = DEFORMATIONS[name].component
    arguments = {key: value for key, value in settings.items() if key not in NOT_ARGUMENTS}
    if field.needs_rig:
        if rig is None:
            raise DynaPoseError(f"dynamic/deformation={name} is built on the support keypoints: it needs a rig")
        arguments["rig"] = rig
    return field(means, **arguments)
