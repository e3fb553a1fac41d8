"""The novel-view prior's loss (SDS with Zero123, or the oracle's views), in both stages.

Scored in chunks (priors/chunks.py): the term's value is the prior's loss over all the views
and its gradient the chunks' accumulated gradient, so it weights and sums like any other term.
"""

from ...priors.chunks import score_in_chunks
from . import DYNAMIC_TERMS, STATIC_TERMS


@STATIC_TERMS.register("prior")
@DYNAMIC_TERMS.register("prior")
def prior(stage):
    if stage.prior is None:  # <stage>.prior=none
        return None

    def term(batch):
        value, surrogate = score_in_chunks(
            stage.prior, batch.novel_renders, batch.novel_alphas, batch.views, stage.step_ratio(),
            stage.settings.prior_chunk,
        )  # fmt: skip
        return value + (surrogate - surrogate.detach())  # the loss's value, the surrogate's gradient

    return term
