"""Image quality metrics and the run's metrics.json."""

import json
import os
from pathlib import Path

import numpy as np
import torch


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (data range 1)."""
    mse = torch.mean((prediction.float() - target.float()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM of two RGB images [H, W, 3] in [0, 1]: Wang et al.'s Gaussian 11x11, sigma 1.5 window."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            prediction.detach().cpu().numpy(), target.detach().cpu().numpy(), channel_axis=-1,
            data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
    )  # fmt: skip


def update_metrics_file(run_dir: Path, section: str, values: dict) -> None:
    """Merge `values` under `section` into <run_dir>/metrics.json (atomically)."""
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics[section] = values
    temporary = path.with_name(".metrics.json.tmp")
    temporary.write_text(json.dumps(metrics, indent=2) + "\n")
    os.replace(temporary, path)


# torchvision checkpoints the `lpips` package loads for its backbone (it fetches them on first use).
LPIPS_BACKBONES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def load_lpips(net: str = "alex"):
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
