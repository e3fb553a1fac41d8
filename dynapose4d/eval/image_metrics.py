"""PSNR and SSIM exactly as the Consistent4D script gets them from torchmetrics' defaults.

compute_image_level_metrics.py calls `peak_signal_noise_ratio(pred, gt)` and
`structural_similarity_index_measure(pred, gt)` on one 0-255 frame at a time without a
`data_range`, so the range comes from the frames themselves (a fixed range of 1 gives
higher numbers whenever a frame does not span black to white). Every score of this project
uses these two functions: the training stages' held-out metrics and scripts/eval.py, so one
run has one PSNR.
"""

import math

import torch

# torchmetrics' SSIM defaults, which are Wang et al.'s constants.
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB of one frame [H, W, 3] in [0, 1], data range = target.max() - target.min().

    That is torchmetrics' `data_range=None` rule for PSNR. Identical frames give inf, not a capped
    value: a cap would change the benchmark's averages, and torchmetrics gives inf too.
    """
    prediction, target = prediction.double(), target.double()
    mse = torch.mean((prediction - target) ** 2).item()
    if mse == 0:
        return math.inf
    data_range = (target.max() - target.min()).item()
    return 10 * math.log10(data_range**2 / mse)


def object_psnr(prediction: torch.Tensor, target: torch.Tensor, coverage: torch.Tensor) -> float:
    """PSNR of one frame [H, W, 3] on the bounding box of the target's object (`coverage` [H, W] > 0).

    The background outside the box is left out, so an object that fills a tenth of the frame is
    not flattered by the nine tenths a blank render already gets right. A frame whose target
    shows no object gives the whole-frame PSNR.
    """
    rows, columns = (coverage > 0).any(dim=1).nonzero()[:, 0], (coverage > 0).any(dim=0).nonzero()[:, 0]
    if len(rows) == 0:
        return psnr(prediction, target)
    box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1))
    return psnr(prediction[box], target[box])


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """SSIM of one frame [H, W, 3] in [0, 1] with torchmetrics' defaults.

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (not sample) covariances,
    the 5-pixel border excluded from the mean, channels averaged, and
    data range = max(prediction.max() - prediction.min(), target.max() - target.min()).
    skimage with these settings (`gaussian_weights=True, use_sample_covariance=False`) computes
    the same thing; tests check it against a direct implementation of torchmetrics' algorithm.
    """
    from skimage.metrics import structural_similarity

    prediction, target = prediction.detach().double().cpu(), target.detach().double().cpu()
    data_range = max((prediction.max() - prediction.min()).item(), (target.max() - target.min()).item())
    return float(
        structural_similarity(
            prediction.numpy(), target.numpy(), channel_axis=-1, data_range=data_range,
            gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False,
        )
    )  # fmt: skip
