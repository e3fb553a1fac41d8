"""Scoring novel views in chunks, so a step's memory does not grow with its number of views.

Zero123's VAE encoder keeps about 0.37 GiB of activations per 256² view in fp16 for the
backward pass (benchmarks/memory.py): the dynamic stage's 14 frames x 4 views would need
20.7 GiB at once, 3 GiB in chunks of 8. Here the renders are cut from the graph into leaves; each chunk of views
is scored and backpropagated into those leaves alone, which frees its activations before
the next chunk; the stage then backpropagates the renders once, through a surrogate term
whose gradient is the leaves' accumulated gradient. The gradient is the one of scoring all
views at once, because a prior's loss is a mean of per-view terms (priors.Prior).
"""

import torch

from . import Prior, ViewBatch


def score_in_chunks(
    prior: Prior,
    colors: torch.Tensor,  # [B, H, W, 3] the renders, in the stage's graph
    alphas: torch.Tensor,  # [B, H, W, 1]
    views: ViewBatch,
    step_ratio: float,
    chunk_size: int,  # views per pass through the prior
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior's loss over all `views` (a detached scalar, to log) and a surrogate scalar to add to the
    stage's objective in its place: its gradient with respect to `colors` and `alphas` is the loss's."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    leaves = [tensor.detach().requires_grad_(tensor.requires_grad) for tensor in (colors, alphas)]
    count = len(colors)
    value = torch.zeros((), device=colors.device)
    for start in range(0, count, chunk_size):
        chunk = slice(start, start + chunk_size)
        share = len(range(count)[chunk]) / count  # the chunk's views' weight in the mean over all views
        loss = share * prior.loss(leaves[0][chunk], leaves[1][chunk], views[chunk], step_ratio)
        if loss.requires_grad:
            loss.backward()  # into the leaves only: the chunk's graph through the prior is freed here
        value = value + loss.detach()
    surrogate = sum(
        ((tensor * leaf.grad).sum() for tensor, leaf in zip((colors, alphas), leaves) if leaf.grad is not None),
        torch.zeros((), device=colors.device),
    )
    return value, surrogate
