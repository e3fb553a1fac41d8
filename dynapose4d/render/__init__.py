"""`rasterize()`: one contract (gsplat's), two backends.

`torch` is pure PyTorch and runs anywhere; `gsplat` is gsplat's CUDA rasteriser; `auto`
takes gsplat on CUDA when its kernels load and falls back to torch with one log line.
"""

import functools
import logging

import torch

from ..cameras import camera_positions
from .gsplat_backend import gsplat_available, rasterize_gsplat
from .sh import sh_to_rgb
from .torch_backend import rasterize_torch

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "gsplat")


def rasterize(
    means: torch.Tensor,
    quats: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    backgrounds: torch.Tensor | None = None,
    render_mode: str = "RGB",
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    backend: str = "auto",
    tile_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Render Gaussians into C cameras, with gsplat.rasterization's semantics (classic mode).

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] rotations, wxyz, need not be normalised.
        scales: [N, 3] activated (positive) scales.
        opacities: [N] activated opacities in (0, 1).
        colors: [N, D] or [C, N, D] features, or SH coefficients [N, K, 3] when `sh_degree` is set.
        viewmats: [C, 4, 4] world-to-camera (OpenCV: x right, y down, z forward).
        Ks: [C, 3, 3] pixel intrinsics.
        width, height: image size in pixels.
        backgrounds: [C, D] colour behind the Gaussians (not applied to the depth channel).
        render_mode: "RGB" or "RGB+ED" (adds expected camera-space depth as a last channel).
        sh_degree: evaluate `colors` as SH of this degree along (mean - camera centre).
        near_plane, far_plane: Gaussians with camera z outside are culled.
        eps2d: low-pass variance (px^2) added to every projected covariance.
        radius_clip: cull Gaussians whose footprint radius is at most this (px).
        backend: "auto", "torch" or "gsplat".
        tile_size: torch backend tile edge in pixels (None = its default).

    Returns:
        colors [C, H, W, D(+1)], alphas [C, H, W, 1], meta with `means2d` [C, N, 2] (call
        `retain_grad()` on it for densification), `radii` [C, N, 2], `depths`, `conics`,
        `width`, `height`, `n_cameras`.
    """
    if render_mode not in ("RGB", "RGB+ED"):
        raise ValueError(f"render_mode must be 'RGB' or 'RGB+ED', got {render_mode!r}")
    name = resolve_backend(backend, means.device)
    if sh_degree is not None:
        colors = sh_to_rgb(colors, means, camera_positions(viewmats), sh_degree)  # [C, N, 3]
    options = dict(
        backgrounds=backgrounds, render_mode=render_mode, near_plane=near_plane, far_plane=far_plane,
        eps2d=eps2d, radius_clip=radius_clip,
    )  # fmt: skip
    if name == "gsplat":
        return rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options)
    if tile_size is not None:
        options["tile_size"] = tile_size
    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options)


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that will actually run: `auto` becomes gsplat or torch."""
    if backend not in BACKENDS:
        raise ValueError(f"render backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    device = torch.device(device)
    if backend == "gsplat":
        usable, reason = gsplat_available(device)
        if not usable:
            raise RuntimeError(f"render backend 'gsplat' is unavailable: {reason}. Use render.backend=torch.")
        return "gsplat"
    return _auto_backend(device)


@functools.cache
def _auto_backend(device: torch.device) -> str:
    # Cached so the fallback is probed and logged once per device, not once per frame.
    usable, reason = gsplat_available(device)
    if usable:
        return "gsplat"
    if device.type == "cuda":
        log.warning("gsplat unavailable (%s); using the torch rasteriser", reason)
    return "torch"
