"""The skeleton field's own terms: its residual hexplane stays small, so the bones carry the motion, and its bones
keep their lengths where they may stretch."""

from . import DYNAMIC_TERMS


@DYNAMIC_TERMS.register("residual")
def residual(stage):
    """Mean squared displacement [world units^2] of the Gaussians by the skeleton's residual field at the batch's
    times; it does not apply to a field without one (the other fields, or residual: null)."""
    deformation, rest = stage.deformation, stage.canonical_means
    if getattr(deformation, "residual", None) is None:
        return None
    return lambda batch: deformation.residual_offsets(rest, batch.t).square().sum(dim=-1).mean()


@DYNAMIC_TERMS.register("bone_stretch")
def bone_stretch(stage):
    """Mean squared log change of the skeleton's bone lengths at the batch's times; it does not apply to a field
    whose lengths are fixed (the other fields, or stretch: false)."""
    deformation = stage.deformation
    if getattr(deformation, "stretches", None) is None:
        return None
    return lambda batch: deformation.stretch_penalty(batch.t)
