"""Adaptive density control: grow, split and prune Gaussians (3DGS, Kerbl et al. 2023).

A thin wrapper around gsplat's `DefaultStrategy`, which works on CPU tensors. It adds:

- the model/optimizer plumbing of this package (`GaussianModel.params` + one Adam
  per parameter from `GaussianModel.make_optimizers`);
- `state_dict()` / `load_state_dict()`, so a resumed run keeps the accumulated
  screen-space gradients and makes the same densification decisions;
- the opacity reset, which gsplat 1.5.3 never performs: its condition
  `step % self.reset_every == 0 & step > 0` parses as the chained comparison
  `... == (0 & step) > 0`, always False. Resetting twice is harmless (the clamp and
  the zeroed Adam moments are idempotent), so this stays correct on a fixed gsplat;
- `prune_large`: pruning Gaussians larger than `prune_scale3d * scene_scale` at every
  refinement, as 3DGS and DreamGaussian do (gsplat starts only after the first reset);
- `from_dreamgaussian`, which reads DreamGaussian's densification settings in its own
  units and converts them once (see there).

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

    def __init__(self, scene_scale: float = 1.0, prune_large: bool = False, **settings: Any):
        # Imported here so `import dynapose4d.densify` does not pull in gsplat.
        from gsplat.strategy import DefaultStrategy

        self.strategy = DefaultStrategy(**settings)
        self.state = self.strategy.initialize_state(scene_scale=scene_scale)
        self.prune_large = prune_large

    @classmethod
    def from_dreamgaussian(
        cls,
        start: int,
        stop: int,
        every: int,
        grad_threshold: float,
        percent_dense: float,
        extent: float,
        min_opacity: float,
        max_scale: float,
        opacity_reset_every: int,
    ) -> "Densifier":
        """DreamGaussian's adaptive density control, in its own units and 1-based step count.

        DreamGaussian densifies at its steps `start`, `start + every`, ... up to `stop`
        (pass `step + 1` of a 0-based trainer): Gaussians whose mean screen-space gradient
        reaches `grad_threshold` are cloned when no larger than `percent_dense * extent`
        and split otherwise; then those under `min_opacity` or larger than
        `max_scale * extent` are pruned. Opacities are reset every `opacity_reset_every`.

        The gradient threshold needs no conversion factor when the renderer's `info` covers
        exactly the views of a loss averaged over them (the static stage's prior views):
        - DreamGaussian reads the gradient of its 2D means in NDC units, which is the
          pixel gradient times (W/2, H/2), of one view whose loss has weight 1;
        - gsplat multiplies the pixel gradient of each of its C cameras by (W/2, H/2) and
          by C, which undoes the 1/C each camera gets in a loss averaged over C views.
        So both accumulate, per visible Gaussian and view, the NDC gradient of that view's
        own loss. tests/test_recipe.py checks this against per-view NDC gradients.
        The one difference in kind: gsplat averages over every step since the last
        refinement, where DreamGaussian starts accumulating at `start`, so its first
        densification decides on a single step's gradients.
        """
        return cls(
            scene_scale=extent,
            prune_large=True,
            refine_start_iter=start - 1,  # gsplat refines when step > refine_start_iter
            refine_stop_iter=stop + 1,  # ... and step < refine_stop_iter
            refine_every=every,
            grow_grad2d=grad_threshold,
            grow_scale3d=percent_dense,
            prune_opa=min_opacity,
            prune_scale3d=max_scale,
            reset_every=opacity_reset_every,
            pause_refine_after_reset=0,
            refine_scale2d_stop_iter=0,  # DreamGaussian's screen-size pruning never fires (3DGS's bug)
        )

    def is_refine_step(self, step: int) -> bool:
        """Whether gsplat grows and prunes at `step` (its own condition, restated)."""
        strategy = self.strategy
        return (
            strategy.refine_start_iter < step < strategy.refine_stop_iter
            and step % strategy.refine_every == 0
            and step % strategy.reset_every >= strategy.pause_refine_after_reset
        )

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
        from gsplat.strategy.ops import remove, reset_opa

        strategy = self.strategy
        strategy.step_post_backward(model.params, optimizers, self.state, step, info)
        if self.prune_large and self.is_refine_step(step):
            largest = torch.exp(model.params["scales"]).max(dim=-1).values  # [N]
            too_large = largest > strategy.prune_scale3d * self.state["scene_scale"]
            if too_large.any():
                remove(params=model.params, optimizers=optimizers, state=self.state, mask=too_large)
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
