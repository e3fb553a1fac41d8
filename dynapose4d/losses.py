"""The training losses of DynaPose4D's dynamic stage (paper §3.1-3.2).

Every loss returns a scalar tensor. On empty inputs (no frames, no keypoints, a single
time step) the result is an exact 0 that still belongs to the autograd graph of its input,
so callers can add it to a total and call `backward()` without special cases.
"""

from torch import Tensor


def _mean_squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over all elements of (prediction - target)^2; a graph-connected 0 when empty."""
    if prediction.shape != target.shape:
        raise ValueError(f"shape mismatch: prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}")
    difference = prediction - target
    if difference.numel() == 0:
        return difference.sum()  # the mean of nothing would be NaN
    return difference.square().mean()


def reference_loss(
    colors: Tensor,
    target_colors: Tensor,
    alphas: Tensor | None = None,
    target_masks: Tensor | None = None,
    mask_weight: float = 0.0,
) -> Tensor:
    """Reference-view reconstruction loss, eq. (3) of the paper:

        L_Ref = 1/T sum_tau || f(S'_tau, o_Ref) - I_tau^Ref ||_2^2

    i.e. the MSE between the deformed Gaussians rendered at the reference camera and the
    driving-video frames. The squared norm is averaged per pixel and channel (not summed),
    so loss weights do not change with the render resolution. DreamGaussian4D's mask term,
    `mask_weight * MSE(alphas, target_masks)`, is added when `mask_weight > 0`; it pulls the
    rendered silhouette onto the foreground mask of each frame.

    Args:
        colors: [B, H, W, 3] rendered frames in [0, 1].
        target_colors: [B, H, W, 3] reference frames I_tau^Ref.
        alphas: [B, H, W, 1] rendered opacity; needed when mask_weight > 0.
        target_masks: [B, H, W, 1] foreground masks in [0, 1]; needed when mask_weight > 0.
        mask_weight: weight of the mask term.
    """
    loss = _mean_squared_error(colors, target_colors)
    if mask_weight > 0.0:
        if alphas is None or target_masks is None:
            raise ValueError("reference_loss: mask_weight > 0 needs both alphas and target_masks")
        loss = loss + mask_weight * _mean_squared_error(alphas, target_masks.to(alphas.dtype))
    return loss


def keypoint_match_loss(
    predicted: Tensor,
    target: Tensor,
    image_size: int | tuple[int, int],
    visibility: Tensor | None = None,
) -> Tensor:
    """Keypoint Match Loss (KML), eq. (4) of the paper:

        L_KML = 1/N sum_{i=1}^{N} sum_tau || p_tau^i - p_hat_tau^i ||^2

    where p_tau are the keypoints of the driving-video frame I_tau^Ref (`target`) and
    p_hat_tau those of the rendered frame f(S'_tau, o_Ref) (`predicted`). The squared
    distance is summed over the B frames of the batch and averaged over the N keypoints.

    Deviation from the paper: pixel coordinates are first divided by the image size (x by
    the width, y by the height), so the loss, and hence its weight, does not depend on the
    render resolution. The paper's sum runs to T-1; here it covers every frame passed in.

    Args:
        predicted: [B, N, 2] keypoints p_hat of the rendered frames, pixel coords (x, y).
        target: [B, N, 2] keypoints p of the reference frames, pixel coords (x, y).
        image_size: side of a square image, or (width, height).
        visibility: optional [B, N] mask or weights; each frame then averages over its
            visible keypoints only (a frame with none contributes 0).
    """
    if predicted.shape != target.shape or predicted.shape[-1] != 2:
        raise ValueError(f"keypoints must both be [B, N, 2], got {tuple(predicted.shape)} and {tuple(target.shape)}")
    width, height = (image_size, image_size) if isinstance(image_size, int) else image_size
    scale = predicted.new_tensor([width, height])  # [2] (x, y) order, matching the coordinates
    difference = (predicted - target) / scale  # [B, N, 2]
    if difference.numel() == 0:
        return difference.sum()
    squared = difference.square().sum(dim=-1)  # [B, N]
    if visibility is None:
        return squared.mean(dim=1).sum()
    weights = visibility.to(squared.dtype)  # [B, N]
    # Clamping the count keeps frames without visible keypoints at 0 instead of 0/0.
    per_frame = (weights * squared).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-8)  # [B]
    return per_frame.sum()


def spatio_temporal_consistency_loss(points: Tensor) -> Tensor:
    """Spatio-temporal Consistency Loss (SCL), eq. (5) of the paper:

        L_SCL = 1/M sum_{i=1}^{M} sum_{tau=1}^{T-1} || P_{tau+1}^i - P_tau^i ||^2

    The squared displacement of every Gaussian centre between consecutive time steps,
    summed over the T'-1 steps and averaged over the M Gaussians. It penalises abrupt
    jumps of the deformed centres.

    Args:
        points: [T', M, 3] positions of the same M points at T' consecutive times (the
            caller chooses which consecutive frames to pass, e.g. a window of the video).
    """
    if points.dim() != 3:
        raise ValueError(f"points must be [T, M, 3], got {tuple(points.shape)}")
    steps = points[1:] - points[:-1]  # [T'-1, M, 3]
    if steps.numel() == 0:
        return steps.sum()  # one frame or no points: nothing moves
    return steps.square().sum(dim=-1).sum(dim=0).mean()


def pose_alignment_loss(kml: Tensor, scl: Tensor, kml_weight: float, scl_weight: float) -> Tensor:
    """Pose Alignment Loss (PAL), paper §3.2: PAL = w_KML * L_KML + w_SCL * L_SCL (eqs. 4 and 5)."""
    return kml_weight * kml + scl_weight * scl
