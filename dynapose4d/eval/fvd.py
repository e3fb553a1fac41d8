"""Fréchet Video Distance: the Fréchet distance between Gaussians fitted to I3D features of
real and generated videos.

Detector (`eval.fvd_i3d`, either file):
  i3d_pretrained_400.pt   the benchmark's own: pytorch-i3d's InceptionI3d(400) state dict, which
                          Consistent4D's compute_fvd.py loads; the feature is the Kinetics-400
                          logits averaged over time (i3d.py). Published Consistent4D FVDs use it.
  i3d_torchscript.pt      StyleGAN-V's torchscript I3D, called as
                          i3d(videos, rescale=False, resize=False, return_features=True) -> [N, 400],
                          the 400-d features before the softmax (StyleGAN-V, common_metrics_on_video_quality).
Both take videos [N, 3, T, 224, 224] in [-1, 1]. Preprocessing follows compute_fvd.py: each channel
of each frame resized to 224x224 with PIL bicubic (float mode), then x / 127.5 - 1. The real I3D
needs about 10+ frames; Consistent4D clips have 32.

Two numbers, from the same features:
  fvd         Consistent4D's own (compute_fvd.py): one distance per (object, view) between the
              features of ONE real and ONE generated video, the mean over an object's 4 views,
              then over objects. Its statistics of a single [1, D] feature row are degenerate:
              see consistent4d_view_fvd. Every published Consistent4D "FVD" is this quantity.
  fvd_pooled  a Fréchet distance that is defined: the real set is the features of every
              ground-truth view video of every scored object (4 x 7 = 28 for the full benchmark),
              the generated set the matching renders, each with its mean and unbiased covariance.
"""

import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DynaPoseError
from ..media import to_uint8
from ..pretrained import PretrainedModel, resolve_pretrained
from ..pretrained.i3d import I3D_SIZE, InceptionI3d, load_i3d_400
from ..pretrained.i3d import i3d_features as consistent4d_features

I3D_DOWNLOAD = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"


def i3d_weights(path: str | None) -> PretrainedModel:
    return PretrainedModel(
        name="I3D (Kinetics-400: Consistent4D's i3d_pretrained_400.pt, or StyleGAN-V's torchscript)",
        location=path,
        config_key="eval.fvd_i3d",
        licence="Apache-2.0 (DeepMind kinetics-i3d)",
        download=I3D_DOWNLOAD,
    )


def load_i3d(path: str | None, device="cpu") -> "InceptionI3d | torch.jit.ScriptModule":
    """The I3D at `path`: pytorch-i3d's network for a state dict, StyleGAN-V's for a torchscript archive
    (DynaPoseError saying where to get one when absent)."""
    path = resolve_pretrained(i3d_weights(path))
    if not is_torchscript(path):
        return load_i3d_400(path, device)
    with warnings.catch_warnings():  # torch.jit.load is deprecated, but StyleGAN-V's I3D exists only as torchscript
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def is_torchscript(path: Path) -> bool:
    """A torchscript archive (its zip holds the module's code), not a torch.save state dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def i3d_network(i3d) -> str:
    """Which I3D the features come from, for the report."""
    if isinstance(i3d, InceptionI3d):
        return "pytorch-i3d InceptionI3d(400), logits averaged over time (Consistent4D's)"
    return "StyleGAN-V torchscript I3D features"


def i3d_input(video: torch.Tensor) -> torch.Tensor:
    """Video [T, H, W, 3] in [0, 1] -> I3D input [3, T, 224, 224] in [-1, 1] (compute_fvd.py's preprocessing)."""
    pixels = to_uint8(video).astype(np.float32)  # [T, H, W, 3], 0..255 as read from PNG
    resized = [
        [np.asarray(_resize_channel(frame[..., channel])) for channel in range(3)] for frame in pixels
    ]  # [T][3] arrays [224, 224]
    return torch.from_numpy(np.asarray(resized)).permute(1, 0, 2, 3) / 127.5 - 1


def _resize_channel(channel: np.ndarray) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(channel))  # mode "F": no 8-bit rounding after resizing
    return image.resize((I3D_SIZE, I3D_SIZE), Image.Resampling.BICUBIC)


def i3d_features(i3d, videos: torch.Tensor) -> np.ndarray:
    """I3D features [N, D] of videos [N, T, H, W, 3] in [0, 1]."""
    device = next(iter(i3d.parameters()), torch.empty(0)).device
    batch = torch.stack([i3d_input(video) for video in videos]).to(device)  # [N, 3, T, 224, 224]
    if isinstance(i3d, InceptionI3d):
        return consistent4d_features(i3d, batch).double().cpu().numpy()
    with torch.no_grad():
        return i3d(batch, rescale=False, resize=False, return_features=True).double().cpu().numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) of two Gaussians.

    tr (sigma1 sigma2)^(1/2) is the sum of the square roots of the eigenvalues of
    sigma1^(1/2) sigma2 sigma1^(1/2), a symmetric positive semi-definite matrix with the same
    spectrum, so two symmetric eigendecompositions suffice. Unlike scipy.linalg.sqrtm on the
    non-symmetric product, this stays real and stable for the rank-deficient covariances of a few
    dozen videos in 400 dimensions.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if not all(np.isfinite(array).all() for array in (mu1, sigma1, mu2, sigma2)):
        # scipy's sqrtm hangs on the NaN covariance of a single video; fail at once instead
        raise DynaPoseError("Fréchet distance of non-finite statistics (a covariance of fewer than two videos?)")
    root1 = _psd_sqrt(sigma1)
    eigenvalues = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; tiny negative eigenvalues (round-off) count as 0."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def fvd_from_features(real: np.ndarray, generated: np.ndarray) -> float:
    """FVD of feature sets [N, D] and [M, D] (N, M >= 2: a covariance needs two samples)."""
    if len(real) < 2 or len(generated) < 2:
        raise DynaPoseError(
            f"FVD needs at least two videos on each side (got {len(real)} real, {len(generated)} generated)"
        )
    return frechet_distance(
        real.mean(0), np.cov(real, rowvar=False), generated.mean(0), np.cov(generated, rowvar=False)
    )


def consistent4d_view_fvd(real: np.ndarray, generated: np.ndarray) -> float:
    """Consistent4D's FVD of one view: the I3D features [D] of one real and one generated video.

    compute_fvd.py takes mu = np.mean(feats, axis=0) and sigma = np.cov(feats, rowvar=False) of a
    [1, D] array. numpy 1.x transposes for rowvar=False only when there is more than one row, so
    it reads the single row as ONE variable observed D times and returns a scalar: the variance of
    the D features (ddof=1). With scalar covariances the Fréchet distance
    |mu1 - mu2|^2 + s1 + s2 - 2 sqrt(s1 s2) is
        |f_real - f_generated|^2 + (std(f_real) - std(f_generated))^2,
    std over the D features with ddof=1. (numpy 2 gives a D x D NaN matrix for the same call.)
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    difference = real - generated
    return float(difference @ difference + (real.std(ddof=1) - generated.std(ddof=1)) ** 2)


class FVDPool:
    """I3D features of real and generated videos, per scored object and view."""

    def __init__(self, i3d):
        self.i3d = i3d
        self.real: dict[str, np.ndarray] = {}  # object -> [V, D]
        self.generated: dict[str, np.ndarray] = {}

    def add(self, name: str, real: torch.Tensor, generated: torch.Tensor) -> None:
        """Add object `name`'s view videos, real and generated [V, T, H, W, 3] in [0, 1]."""
        self.real[name] = i3d_features(self.i3d, real)
        self.generated[name] = i3d_features(self.i3d, generated)

    def consistent4d(self) -> dict:
        """Consistent4D's FVD: {"mean": over objects, "per_object": {name: mean over its views}, "network"}."""
        per_object = {
            name: float(np.mean([consistent4d_view_fvd(r, g) for r, g in zip(self.real[name], self.generated[name])]))
            for name in self.real
        }
        return {"mean": float(np.mean(list(per_object.values()))), "per_object": per_object,
                "network": i3d_network(self.i3d)}  # fmt: skip

    def pooled(self) -> float:
        return fvd_from_features(
            np.concatenate(list(self.real.values())), np.concatenate(list(self.generated.values()))
        )
