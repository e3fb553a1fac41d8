"""A deformation pinned to the identity at one time: the frame the static model was fitted to.

The static model is the input image's 3D shape, and the driving video starts from that
image (SVD conditions on it; a user's clip gives its first frame to the static stage). A
free field phi(x, t) need not stay the identity there: one reference view only pins the
projection, so fitting the later frames drags Gaussians along viewing rays at the anchor
frame as well, where the static model was right. Measuring each quantity relative to the
anchor time t0,

    means'(t) = means + (m(t) - m(t0)),   log_scales'(t) = log_scales + (s(t) - s(t0)),
    quats'(t) = q(t) conj(q(t0)) quats,

makes the field the identity at t0 whatever it learns (centres and scales exactly, rotations
to rounding). Both fields rotate a Gaussian as q(t) = r(t) quats, so q(t) conj(q(t0)) =
r(t) conj(r(t0)), the rotation from the anchor pose to time t.
"""

import torch

from ..geometry import quat_conjugate, quat_multiply
from . import Deformation


class AnchoredDeformation(Deformation):
    """`field` measured from its state at normalised time `anchor_time`: the identity there.

    Priors and optimisers reach the field's own parts (planes, controls) through it:
    attributes this wrapper does not have are the field's.
    """

    def __init__(self, field: Deformation, anchor_time: float):
        super().__init__()
        self.field = field
        self.register_buffer("anchor_time", torch.tensor([float(anchor_time)]))  # [1]

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers and submodules, `field` among them
        except AttributeError:
            if name == "field":
                raise
            return getattr(self.field, name)

    @property
    def needs_rig(self) -> bool:  # the field's: a class attribute, so __getattr__ would not reach it
        return self.field.needs_rig

    def _with_anchor(self, t: torch.Tensor) -> torch.Tensor:
        """[B + 1] times: `t` [B], then the anchor time (one batched pass of the field for both)."""
        return torch.cat([t.to(self.anchor_time), self.anchor_time])

    def forward(
        self, means: torch.Tensor, quats: torch.Tensor, log_scales: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        moved, turned, scaled = self.field(means, quats, log_scales, self._with_anchor(t))  # [B + 1, N, ...]
        new_means = means + (moved[:-1] - moved[-1:])  # [B, N, 3]
        from_anchor = quat_multiply(turned[:-1], quat_conjugate(turned[-1:]))  # [B, N, 4]
        new_quats = quat_multiply(from_anchor, quats)
        new_log_scales = log_scales + (scaled[:-1] - scaled[-1:])  # [B, N, 3]
        return new_means, new_quats, new_log_scales

    def motion_points(self, means: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        points = self.field.motion_points(means, self._with_anchor(t))  # [B + 1, M, 3]
        return self.field.rest_points(means) + (points[:-1] - points[-1:])

    def rest_points(self, means: torch.Tensor) -> torch.Tensor:
        return self.field.rest_points(means)

    def keypoints_at(self, points: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        carried = self.field.keypoints_at(points, self._with_anchor(t))  # [B + 1, P, 3]
        return points + (carried[:-1] - carried[-1:])

    def param_groups(self, lr: float) -> list[dict]:
        return self.field.param_groups(lr)
