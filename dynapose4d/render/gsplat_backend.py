"""gsplat's CUDA rasteriser behind our contract; gsplat is imported only when used."""

import torch


def gsplat_available(device: torch.device) -> tuple[bool, str]:
    """Whether gsplat's CUDA kernels can run on `device`, and why not."""
    if device.type != "cuda":
        return False, "gsplat needs a CUDA device"
    try:
        from gsplat.cuda._backend import _C
    except Exception as error:  # a failed JIT build surfaces as many exception types
        return False, f"gsplat could not load its CUDA kernels ({type(error).__name__}: {error})"
    if _C is None:
        return False, "gsplat found no CUDA toolkit to build its kernels"
    return True, ""


def rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **options):
    """`gsplat.rasterization` with packed=False so meta['radii'] is [C, N, 2] like the torch backend."""
    from gsplat import rasterization

    options.pop("tile_size", None)  # the torch backend's knob; gsplat keeps its own 16 px tiles
    return rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=False, **options)
