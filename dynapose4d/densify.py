"""Adaptive density control: grow, split and prune Gaussians (3DGS, Kerbl et al. 2023).

A thin wrapper around gsplat's `DefaultStrategy`, which works on CPU tensors. It adds:

- the model/optimizer plumbing of this package (`GaussianModel.params` + one Adam
  per parameter from `GaussianModel.make_optimizers`);
- `state_dict()` / `load_state_dict()`, so a resumed run keeps the accumulated
  screen-space gradients and makes the same densification decisions;
- the opacity reset, which gsplat 1.5.3 never performs: its condition
  `step % self.reset_every == 0 & step > 0` parses as the chained comparison
  `... == (0 & step) > 0`, always False. Resetting twice is harmless (the clamp and
  the zeroed Adam moments are idempotent), so this stays correct on a fixed gsplat.

The renderer's `meta` is the `info` here: `means2d` [C, N, 2] (its `.grad` is read
after backward), `radii` [C, N, 2] int, `width`, `height`, `n_cameras` and
`gaussian_ids` (None: unpacked). Densification replaces the Parameter objects in
`model.params` (and any extra per-Gaussian keys there), so never hold on to them
across a `step_post_backward`. Splitting samples with torch's global RNG, so an exact
resume also needs the RNG state restored.
"""

from typing import Any

import torch

from dynapose4d.gaussians import GaussianModel


class Densifier:
    """gsplat's DefaultStrategy with its running state kept beside it.

    Args:
        scene_scale: the scene's extent; `grow_scale3d` and `prune_scale3d` are
            fractions of it.
        **settings: any `gsplat.strategy.DefaultStrategy` field: refine_start_iter,
            refine_stop_iter, refine_every, grow_grad2d, grow_scale3d, prune_opa,
            prune_scale3d, reset_every, pause_refine_after_reset, absgrad, verbose, ...
    """

    def __init__(self, scene_scale: float = 1.0, **settings: Any):
        # Imported here so `import dynapose4d.densify` does not pull in gsplat.
        from gsplat.strategy import DefaultStrategy

        self.strategy = DefaultStrategy(**settings)
        self.state = self.strategy.initialize_state(scene_scale=scene_scale)

    def check(self, model: GaussianModel, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """Fail early if the optimizers do not pair one-to-one with trainable parameters."""
        self.strategy.check_sanity(model.params, optimizers)

    def step_pre_backward(
        self,
        model: GaussianModel,
        optimizers: dict[str, torch.optim.Optimizer],
        step: int,
        info: dict[str, Any],
    ) -> None:
        """Call after rendering, before `loss.backward()`: keeps the grad of `means2d`."""
        self.strategy.step_pre_backward(model.params, optimizers, self.state, step, info)

    def step_post_backward(
        self,
        model: GaussianModel,
        optimizers: dict[str, torch.optim.Optimizer],
        step: int,
        info: dict[str, Any],
    ) -> None:
        """Call after the optimizer step: accumulates gradients, and on refine steps
        duplicates, splits and prunes Gaussians (resizing their optimizer state)."""
        from gsplat.strategy.ops import reset_opa

        strategy = self.strategy
        strategy.step_post_backward(model.params, optimizers, self.state, step, info)
        # gsplat's own reset never fires (see the module docstring); 3DGS resets so
        # that floaters must re-earn their opacity, and the next prune removes them.
        if 0 < step < strategy.refine_stop_iter and step % strategy.reset_every == 0:
            reset_opa(model.params, optimizers, self.state, value=strategy.prune_opa * 2.0)

    def state_dict(self) -> dict[str, Any]:
        """The running statistics (per-Gaussian tensors grad2d, count, ... or None)."""
        return {
            key: value.detach().clone() if isinstance(value, torch.Tensor) else value
            for key, value in self.state.items()
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore `state_dict()`; the settings come from the constructor, not from here."""
        if set(state_dict) != set(self.state):
            raise KeyError(f"densifier state has keys {sorted(state_dict)}, expected {sorted(self.state)}")
        self.state = {
            key: value.detach().clone() if isinstance(value, torch.Tensor) else value
            for key, value in state_dict.items()
        }
