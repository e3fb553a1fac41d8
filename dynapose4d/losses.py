"""The training losses of DynaPose4D's dynamic stage (paper §3.1-3.2), and motion priors beyond them.

Every loss returns a scalar tensor. On empty inputs (no frames, no keypoints, a single
time step) the result is an exact 0 that still belongs to the autograd graph of its input,
so callers can add it to a total and call `backward()` without special cases.
"""

import torch
from torch import Tensor


def _mean_squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over all elements of (prediction - target)^2; a graph-connected 0 when empty."""
    if prediction.shape != target.shape:
        raise ValueError(f"shape mismatch: prediction {tuple(prediction.shape)} vs target {tuple(target.shape)}")
    difference = prediction - target
    if difference.numel() == 0:
        return difference.sum()  # the mean of nothing would be NaN
    return difference.square().mean()


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


# ----- motion priors beyond PAL: what one reference view cannot pin down ----------------------


def rigidity_loss(
    canonical: Tensor, deformed: Tensor, rotations: Tensor, neighbours: Tensor, weights: Tensor
) -> Tensor:
    """Local rigidity (Dynamic 3D Gaussians, Luiten et al. 2024, eq. 6), measured from the canonical model:

        L_rigid = 1/B sum_b sum_i sum_{j in knn(i)} w_ij || (x_j,b - x_i,b) - R_i,b (c_j - c_i) || / sum w

    Each Gaussian carries its neighbours' offsets along with its own rotation, so a limb that
    slides along a viewing ray or stretches pays for it even where the reference view cannot
    see the difference. Dynamic 3D Gaussians compares consecutive frames; the canonical model
    is our common frame, so every time is compared with it.

    Args:
        canonical: [N, 3] canonical centres c (held fixed: the static model's local structure).
        deformed: [B, N, 3] centres x at B times.
        rotations: [B, N, 3, 3] each Gaussian's rotation from canonical to time b.
        neighbours: [N, K] indices of each Gaussian's K nearest canonical neighbours.
        weights: [N, K] w_ij, larger for closer neighbours.
    """
    rest = canonical[neighbours] - canonical[:, None]  # [N, K, 3]
    moved = deformed[:, neighbours] - deformed[:, :, None]  # [B, N, K, 3]
    carried = torch.einsum("bnij,nkj->bnki", rotations, rest)  # [B, N, K, 3]
    return _weighted_neighbour_mean((moved - carried).norm(dim=-1), weights)


def isometry_loss(canonical: Tensor, deformed: Tensor, neighbours: Tensor, weights: Tensor) -> Tensor:
    """Isometry (Dynamic 3D Gaussians eq. 8), from the canonical model:

        L_iso = 1/B sum_b sum_i sum_{j in knn(i)} w_ij | ||x_j,b - x_i,b|| - ||c_j - c_i|| | / sum w

    Distances between neighbours are kept whatever the rotations do: weaker than rigidity,
    and independent of the deformation's rotation output. Shapes as `rigidity_loss`.
    """
    rest = (canonical[neighbours] - canonical[:, None]).norm(dim=-1)  # [N, K]
    moved = (deformed[:, neighbours] - deformed[:, :, None]).norm(dim=-1)  # [B, N, K]
    return _weighted_neighbour_mean((moved - rest).abs(), weights)


def arap_loss(canonical: Tensor, deformed: Tensor, neighbours: Tensor, weights: Tensor) -> Tensor:
    """As-rigid-as-possible energy of a graph of nodes (Sorkine & Alexa 2007; SC4D on its control nodes):

        L_ARAP = 1/B sum_b sum_i sum_{j in knn(i)} w_ij || (p_j,b - p_i,b) - R_i,b (q_j - q_i) ||^2 / sum w

    with R_i,b the rotation that best maps node i's canonical offsets q_j - q_i onto its
    deformed ones (weighted Procrustes, by SVD). Unlike `rigidity_loss` the rotation is not the
    network's but the best any rotation can do, so only stretch and shear are penalised. R is
    held fixed in the gradient: at the optimum the energy is stationary in R (ARAP's local step),
    and the SVD's gradient is unstable where singular values meet.

    Args:
        canonical: [M, 3] canonical node positions q.
        deformed: [B, M, 3] node positions p at B times.
        neighbours, weights: [M, K] the node graph (as `rigidity_loss`).
    """
    rest = canonical[neighbours] - canonical[:, None]  # [M, K, 3]
    moved = deformed[:, neighbours] - deformed[:, :, None]  # [B, M, K, 3]
    rotations = best_rotations(rest, moved.detach(), weights)  # [B, M, 3, 3]
    carried = torch.einsum("bmij,mkj->bmki", rotations, rest)  # [B, M, K, 3]
    return _weighted_neighbour_mean((moved - carried).square().sum(dim=-1), weights)


def best_rotations(rest: Tensor, moved: Tensor, weights: Tensor) -> Tensor:
    """Rotations [B, M, 3, 3] minimising sum_k w_k ||moved_k - R rest_k||^2 per node (Kabsch).

    rest [M, K, 3], moved [B, M, K, 3], weights [M, K]. The sign fix keeps det R = +1 (no reflections).
    """
    covariance = torch.einsum("mk,bmki,mkj->bmij", weights, moved, rest)  # [B, M, 3, 3] sum w moved rest^T
    u, _, vh = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vh))  # [B, M]
    correction = torch.ones_like(u[..., 0])  # [B, M, 3]
    correction[..., 2] = torch.where(sign == 0, 1.0, sign)
    return u @ torch.diag_embed(correction) @ vh


def _weighted_neighbour_mean(values: Tensor, weights: Tensor) -> Tensor:
    """sum_b,i,k w_ik values_bik / (B sum w) for values [B, N, K] and weights [N, K]; a graph-connected 0 when empty."""
    if values.numel() == 0:
        return values.sum()
    return (values * weights).sum() / (values.shape[0] * weights.sum().clamp_min(1e-12))


def plane_total_variation(planes: list[Tensor]) -> Tensor:
    """Total variation of feature planes (4DGaussians' plane TV on the hexplane's spatial planes):

        L_TV = sum_planes 2 (mean_{h,w} (P[h+1, w] - P[h, w])^2 + mean_{h,w} (P[h, w+1] - P[h, w])^2)

    Neighbouring cells of a spatial plane feed neighbouring points, so smooth planes move nearby
    Gaussians alike. `planes`: [1, F, H, W] each.
    """
    total = planes[0].new_zeros(())
    for plane in planes:
        down = (plane[..., 1:, :] - plane[..., :-1, :]).square().mean()
        across = (plane[..., :, 1:] - plane[..., :, :-1]).square().mean()
        total = total + 2.0 * (down + across)
    return total


def time_smoothness(planes: list[Tensor]) -> Tensor:
    """Smoothness in time (4DGaussians): the mean squared second difference of each space-time plane along
    its time axis (H, the plane's rows here), summed over planes. A constant velocity costs nothing; a
    jerk does. `planes`: [1, F, T, W] each, time along dimension 2.
    """
    total = planes[0].new_zeros(())
    for plane in planes:
        velocity = plane[..., 1:, :] - plane[..., :-1, :]  # [1, F, T-1, W]
        acceleration = velocity[..., 1:, :] - velocity[..., :-1, :]  # [1, F, T-2, W]
        if acceleration.numel():
            total = total + acceleration.square().mean()
    return total
