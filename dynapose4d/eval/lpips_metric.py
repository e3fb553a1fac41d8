"""LPIPS, loaded only from weights already on disk (offline machines get a reason, not a download attempt)."""

from pathlib import Path

import torch

# torchvision checkpoints the `lpips` package loads for its backbone (it fetches them on first use).
LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


# Consistent4D scores with torchmetrics' LPIPS, net_type="vgg": our held-out metrics and eval.py use it too.
LPIPS_BENCHMARK_NET = "vgg"


def load_lpips(net: str = LPIPS_BENCHMARK_NET):
    """(LPIPS model, "") when the backbone weights are in the torch hub cache, else (None, why not).

    Checked before constructing so that an offline machine gets a reason, not a download attempt.
    """
    weights = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONES[net]
    if not weights.exists():
        return None, (
            f"LPIPS skipped: backbone weights {weights.name} not found in {weights.parent} "
            f"(download torchvision's {net} weights there, or set TORCH_HOME)"
        )
    import lpips

    return lpips.LPIPS(net=net, verbose=False).eval(), ""


def lpips_distance(model, prediction: torch.Tensor, target: torch.Tensor) -> float:
    """LPIPS of two RGB images [H, W, 3] in [0, 1] (the model expects [-1, 1], channels first)."""
    to_model = lambda image: image.permute(2, 0, 1)[None].float() * 2 - 1  # noqa: E731
    with torch.no_grad():
        return float(model(to_model(prediction), to_model(target)).item())
