"""The skeleton field's own term: its residual hexplane stays small, so the bones carry the motion."""

from . import DYNAMIC_TERMS


@DYNAMIC_TERMS.register("residual")
def residual(stage):
    """Mean squared displacement [world units^2] of the Gaussians by the skeleton's residual field at the batch's
    times; it does not apply to a field without one (the other fields, or residual: null)."""
    deformation, rest = stage.deformation, stage.canonical_means
    if getattr(deformation, "residual", None) is None:
        return None
    return lambda batch: deformation.residual_offsets(rest, batch.t).square().sum(dim=-1).mean()
