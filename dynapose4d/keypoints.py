"""Keypoint geometry for the Keypoint Match Loss (paper §3.2).

Pixel coordinates are continuous (x, y) with pixel (j, i) covering [j, j+1) x [i, i+1), so
pixel centres sit at +0.5 and a point on the optical axis projects to (cx, cy), the
convention of `dynapose4d.cameras` and the renderer.

KML compares keypoints of rendered frames with keypoints of the driving video. They come
either from a detector run on the renders ("render" mode, `KeypointDetector`), or from
support keypoints lifted once onto the static model (`lift_keypoints`), carried by the
deformation and projected back with `project_points` ("lift" mode).
"""

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor


def project_points(points: Tensor, viewmats: Tensor, Ks: Tensor) -> Tensor:
    """Pixel coordinates [B, P, 2] of world points, differentiable.

    Args:
        points: [B, P, 3] one set per camera, or [P, 3] shared by all cameras. Points must
            lie in front of the cameras (z > 0); no clamping is done.
        viewmats: [B, 4, 4] world-to-camera.
        Ks: [B, 3, 3] pixel intrinsics.
    """
    if points.dim() == 2:
        points = points.expand(viewmats.shape[0], *points.shape)  # [B, P, 3]
    camera = points @ viewmats[:, :3, :3].transpose(1, 2) + viewmats[:, None, :3, 3]  # [B, P, 3]
    image = camera @ Ks.transpose(1, 2)  # [B, P, 3] homogeneous pixels
    return image[..., :2] / image[..., 2:]


def unproject_pixels(pixels: Tensor, depths: Tensor, viewmat: Tensor, K: Tensor) -> Tensor:
    """World points [P, 3] at camera-space z `depths` [P] behind `pixels` [P, 2] of one camera.

    The inverse of `project_points` for a single camera (`viewmat` [4, 4], `K` [3, 3]).
    """
    homogeneous = torch.cat([pixels, torch.ones_like(pixels[:, :1])], dim=-1)  # [P, 3]
    camera = torch.linalg.solve(K, homogeneous.T).T * depths[:, None]  # [P, 3], z = depth
    camera_to_world = torch.linalg.inv(viewmat)  # [4, 4]
    return camera @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]


def sample_image(image: Tensor, pixels: Tensor) -> Tensor:
    """Bilinear samples [P, C] of `image` [H, W, C] at continuous pixel coords `pixels` [P, 2].

    With align_corners=False, grid_sample's -1 and +1 are the outer edges of the border
    pixels, so x / W * 2 - 1 maps pixel centres (j + 0.5) exactly onto its sample points.
    Coordinates outside the image read the border pixels.
    """
    height, width = image.shape[:2]
    size = pixels.new_tensor([width, height])  # [2]
    grid = (pixels / size * 2 - 1)[None, None]  # [1, 1, P, 2]
    batch = image.permute(2, 0, 1)[None]  # [1, C, H, W]
    samples = F.grid_sample(batch, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return samples[0, :, 0].T  # [P, C]


def _foreground_depths(keypoints: Tensor, depth: Tensor, foreground: Tensor, search_radius: int) -> Tensor:
    """Depth [N] of the foreground pixel nearest to each keypoint within the search window, NaN if none."""
    height, width = foreground.shape
    offsets = torch.arange(-search_radius, search_radius + 1, device=keypoints.device)
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    window = torch.stack([dx.flatten(), dy.flatten()], dim=-1)  # [K, 2] (x, y)
    candidates = keypoints.floor().long()[:, None] + window  # [N, K, 2] integer pixels
    inside = (candidates[..., 0] >= 0) & (candidates[..., 0] < width)
    inside &= (candidates[..., 1] >= 0) & (candidates[..., 1] < height)
    columns = candidates[..., 0].clamp(0, width - 1)  # [N, K]
    rows = candidates[..., 1].clamp(0, height - 1)  # [N, K]
    usable = inside & foreground[rows, columns]  # [N, K]
    distances = (candidates + 0.5 - keypoints[:, None]).norm(dim=-1)  # [N, K] to pixel centres
    distances = distances.masked_fill(~usable, float("inf"))
    nearest = distances.argmin(dim=1, keepdim=True)  # [N, 1]
    depths = depth[rows.gather(1, nearest), columns.gather(1, nearest)][:, 0]  # [N]
    return depths.masked_fill(~usable.any(dim=1), float("nan"))


@torch.no_grad()
def lift_keypoints(
    keypoints: Tensor, depth: Tensor, alpha: Tensor, viewmat: Tensor, K: Tensor, search_radius: int = 3
) -> Tensor:
    """Lift support keypoints [N, 2] of the reference view onto the static model: world points [N, 3].

    The depth is read from the rendered expected depth map at the pixel containing each
    keypoint (nearest pixel, not bilinear, so a keypoint next to the silhouette never mixes
    object and background depths). A keypoint whose pixel has alpha < 0.5 usually sits on a
    silhouette edge: it takes the depth of the nearest pixel with alpha >= 0.5 within a
    (2r+1)^2 window (r = `search_radius`), else the median depth of all such pixels. The
    lifted point then lies exactly on the keypoint's viewing ray, so it reprojects onto it.
    Computed once on the static model, so no gradient is kept.

    Args:
        keypoints: [N, 2] pixel coords (x, y) in the reference view.
        depth: [H, W, 1] expected camera-space depth (the last channel of render_mode="RGB+ED").
        alpha: [H, W, 1] rendered opacity.
        viewmat: [4, 4] world-to-camera of the reference view.
        K: [3, 3] its pixel intrinsics.
    """
    depth, foreground = depth[..., 0], alpha[..., 0] >= 0.5  # [H, W]
    if not foreground.any():
        raise ValueError("lift_keypoints: the render has no pixel with alpha >= 0.5 to lift keypoints onto")
    depths = _foreground_depths(keypoints, depth, foreground, search_radius)  # [N]
    depths = torch.nan_to_num(depths, nan=depth[foreground].median().item())
    return unproject_pixels(keypoints, depths, viewmat, K)


@runtime_checkable
class KeypointDetector(Protocol):
    """A one-shot pose detector for KML's "render" mode (PoseAnything's CAPE model in the paper).

    It is conditioned on a support image and its keypoints when built, and maps query images
    [B, H, W, 3] in [0, 1] to keypoints [B, N, 2] in pixel coords (x, y), differentiably with
    respect to the images, so the loss on rendered frames reaches the Gaussians.
    """

    num_keypoints: int

    def __call__(self, images: Tensor) -> Tensor: ...


class TemplateMatchingDetector:
    """A small differentiable `KeypointDetector`: template matching plus a soft-argmax.

    For each support keypoint it keeps the (2r+1)^2 colour patch around it in the support
    image. On a query image, the similarity of every pixel is minus the mean squared colour
    difference between that patch and the image window centred there, and the keypoint is
    the softmax-weighted mean pixel centre over the whole image. `temperature` is in units of
    that mean squared difference (colours in [0, 1]); the softmax runs over every pixel, so it
    must be small enough that the many poor matches do not pull the mean towards the image
    centre: the default makes it nearly a hard argmax that interpolates between close matches.

    It is a stand-in for a pose model: it tracks appearance, not pose, and only works for
    small motions of distinctive patches (no rotation, scale or lighting invariance, and
    repeated textures make the soft-argmax average over all matches).
    """

    def __init__(self, support_image: Tensor, support_keypoints: Tensor, radius: int = 3, temperature: float = 0.002):
        """support_image [H, W, 3] in [0, 1], support_keypoints [N, 2] pixel coords (x, y)."""
        self.num_keypoints = support_keypoints.shape[0]
        self.radius = radius
        self.temperature = temperature
        offsets = torch.arange(-radius, radius + 1, dtype=support_keypoints.dtype)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        window = torch.stack([dx.flatten(), dy.flatten()], dim=-1)  # [k*k, 2]
        points = (support_keypoints[:, None] + window).reshape(-1, 2)  # [N*k*k, 2]
        size = 2 * radius + 1
        patches = sample_image(support_image, points).reshape(self.num_keypoints, size, size, -1)  # [N, k, k, 3]
        self.patches = patches.permute(0, 3, 1, 2).detach()  # [N, 3, k, k] conv2d weights

    def similarity(self, images: Tensor) -> Tensor:
        """Minus the per-element mean squared patch difference at every pixel: [B, N, H, W]."""
        patches = self.patches.to(images)  # [N, 3, k, k]
        batch = images.permute(0, 3, 1, 2)  # [B, 3, H, W]
        # Replicate padding so windows at the border compare against edge colours, not black.
        padded = F.pad(batch, [self.radius] * 4, mode="replicate")
        # ||w - p||^2 = sum w^2 - 2 <w, p> + sum p^2, each term a convolution over the window.
        window_energy = F.conv2d(padded.square(), torch.ones_like(patches[:1]))  # [B, 1, H, W]
        cross = F.conv2d(padded, patches)  # [B, N, H, W]
        patch_energy = patches.square().sum(dim=(1, 2, 3))[:, None, None]  # [N, 1, 1]
        return -(window_energy - 2 * cross + patch_energy) / patches[0].numel()

    def __call__(self, images: Tensor) -> Tensor:
        """Keypoints [B, N, 2] (x, y) of query images [B, H, W, 3], differentiable w.r.t. the images."""
        scores = self.similarity(images)  # [B, N, H, W]
        height, width = scores.shape[-2:]
        weights = torch.softmax(scores.flatten(2) / self.temperature, dim=-1)  # [B, N, H*W]
        ys, xs = torch.meshgrid(
            torch.arange(height, dtype=images.dtype, device=images.device) + 0.5,
            torch.arange(width, dtype=images.dtype, device=images.device) + 0.5,
            indexing="ij",
        )
        centres = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # [H*W, 2] pixel centres
        return weights @ centres  # [B, N, 2]
