"""L_Ref (paper eq. 3): the reference view against its target, colour and coverage, in both stages.

The static stage's target is the input image, the dynamic stage's the driving frame at each
sampled time; both are over the run's background. The weights are ramped up over the stage
when `<stage>.ref_warmup` is on (schedules.reference_warmup), so that the prior shapes first.
"""

import torch.nn.functional as F

from . import DYNAMIC_TERMS, STATIC_TERMS


@STATIC_TERMS.register("ref_rgb")
@DYNAMIC_TERMS.register("ref_rgb")
def ref_rgb(stage):
    """Per-pixel MSE of the reference renders [B, S, S, 3] to the targets at their frames."""
    return lambda batch: F.mse_loss(batch.renders, stage.target_rgb[batch.frames])


@STATIC_TERMS.register("ref_mask")
@DYNAMIC_TERMS.register("ref_mask")
def ref_mask(stage):
    """Per-pixel MSE of the rendered alpha [B, S, S, 1] to the targets' masks."""
    return lambda batch: F.mse_loss(batch.alphas, stage.target_mask[batch.frames])
