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
