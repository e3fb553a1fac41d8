"""Keypoint geometry: projection, sampling, lifting onto a rendered model, and the template detector."""

import pytest
import torch
import torch.nn.functional as F

from dynapose4d.cameras import orbit_cameras, reference_camera
from dynapose4d.keypoints import (
    KeypointDetector,
    TemplateMatchingDetector,
    lift_keypoints,
    project_points,
    sample_image,
    unproject_pixels,
)
from dynapose4d.render import rasterize


def some_cameras(width=64, height=48):
    return orbit_cameras(
        torch.tensor([0.0, 20.0, -35.0, 60.0]), torch.tensor([0.0, 45.0, -120.0, 170.0]), 2.5, 49.1, width, height
    )


def random_points(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 3, generator=generator) - 0.5  # inside the unit cube, in front of radius-2.5 cameras


def test_project_unproject_round_trip():
    cameras, points = some_cameras(), random_points(20)
    pixels = project_points(points, cameras.viewmats, cameras.Ks)  # [C, P, 2]
    assert pixels.shape == (len(cameras), 20, 2)
    for c in range(len(cameras)):
        depths = points @ cameras.viewmats[c, 2, :3] + cameras.viewmats[c, 2, 3]  # camera z
        back = unproject_pixels(pixels[c], depths, cameras.viewmats[c], cameras.Ks[c])
        torch.testing.assert_close(back, points, atol=1e-5, rtol=0)


def test_origin_projects_to_the_image_centre():
    cameras = some_cameras(width=64, height=48)
    pixels = project_points(torch.zeros(1, 3), cameras.viewmats, cameras.Ks)
    torch.testing.assert_close(pixels, torch.tensor([32.0, 24.0]).expand(len(cameras), 1, 2), atol=1e-5, rtol=0)


def test_projection_matches_a_homogeneous_computation():
    cameras, points = some_cameras(), random_points(7, seed=1)
    per_camera = points.expand(len(cameras), 7, 3) + 0.01 * torch.arange(len(cameras))[:, None, None]
    pixels = project_points(per_camera, cameras.viewmats, cameras.Ks)
    for c in range(len(cameras)):
        projection = cameras.Ks[c].double() @ cameras.viewmats[c, :3].double()  # [3, 4] = K [R | t]
        for p in range(7):
            homogeneous = projection @ torch.cat([per_camera[c, p].double(), torch.ones(1, dtype=torch.float64)])
            expected = (homogeneous[:2] / homogeneous[2]).float()
            torch.testing.assert_close(pixels[c, p], expected, atol=1e-4, rtol=0)


def test_projection_is_differentiable():
    cameras = some_cameras()
    points = random_points(3).double().requires_grad_()
    viewmats, Ks = cameras.viewmats.double(), cameras.Ks.double()
    assert torch.autograd.gradcheck(lambda x: project_points(x, viewmats, Ks), (points,))


def test_sample_image_at_pixel_centres_and_between_them():
    image = torch.rand(4, 5, 2)
    centres = torch.tensor([[0.5, 0.5], [4.5, 3.5], [2.5, 1.5]])
    torch.testing.assert_close(sample_image(image, centres), image[[0, 3, 1], [0, 4, 2]])
    horizontal = sample_image(image, torch.tensor([[2.0, 1.5]]))[0]  # between pixels (1, 1) and (2, 1)
    torch.testing.assert_close(horizontal, (image[1, 1] + image[1, 2]) / 2)
    vertical = sample_image(image, torch.tensor([[3.5, 3.0]]))[0]  # between rows 2 and 3 of column 3
    torch.testing.assert_close(vertical, (image[2, 3] + image[3, 3]) / 2)


def test_sample_image_outside_reads_the_border():
    image = torch.rand(3, 3, 1)
    torch.testing.assert_close(sample_image(image, torch.tensor([[-4.0, 0.5]]))[0], image[0, 0])


# Two opaque blobs at different depths seen from the reference camera (at z = 2, looking down -z).
BLOB_MEANS = torch.tensor([[-0.3, 0.0, 0.2], [0.3, 0.0, -0.2]])  # camera depths 1.8 and 2.2
BLOB_SCALE = 0.15


@pytest.fixture(scope="module")
def blob_render():
    camera = reference_camera(64, 64)
    colors, alphas, _ = rasterize(
        BLOB_MEANS, torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2, 3), BLOB_SCALE), torch.tensor([0.99, 0.99]),
        torch.rand(2, 3), camera.viewmats, camera.Ks, 64, 64, backend="torch", render_mode="RGB+ED",
    )  # fmt: skip
    return camera, colors[0, ..., 3:], alphas[0]  # depth [H, W, 1], alpha [H, W, 1]


def camera_depth(points, camera):
    return points @ camera.viewmats[0, 2, :3] + camera.viewmats[0, 2, 3]


def test_lifted_keypoints_reproject_and_lie_on_the_object(blob_render):
    camera, depth, alpha = blob_render
    keypoints = project_points(BLOB_MEANS, camera.viewmats, camera.Ks)[0] + torch.tensor([1.3, -0.8])  # [2, 2]
    lifted = lift_keypoints(keypoints, depth, alpha, camera.viewmats[0], camera.Ks[0])
    reprojected = project_points(lifted, camera.viewmats, camera.Ks)[0]
    torch.testing.assert_close(reprojected, keypoints, atol=0.5, rtol=0)
    torch.testing.assert_close(camera_depth(lifted, camera), torch.tensor([1.8, 2.2]), atol=1e-3, rtol=0)
    assert ((lifted - BLOB_MEANS).norm(dim=-1) < 2 * BLOB_SCALE).all()


def first_background_pixel_left_of(alpha, column, row):
    while alpha[row, column, 0] >= 0.5:
        column -= 1
    return column


def test_keypoint_off_the_silhouette_snaps_to_foreground_depth(blob_render):
    camera, depth, alpha = blob_render
    centre = project_points(BLOB_MEANS[:1], camera.viewmats, camera.Ks)[0, 0]
    row = int(centre[1])
    column = first_background_pixel_left_of(alpha, int(centre[0]), row) - 1  # two pixels outside the edge
    keypoint = torch.tensor([[column + 0.5, row + 0.5]])
    assert alpha[row, column, 0] < 0.5
    lifted = lift_keypoints(keypoint, depth, alpha, camera.viewmats[0], camera.Ks[0], search_radius=3)
    assert camera_depth(lifted, camera).item() == pytest.approx(1.8, abs=1e-3)
    torch.testing.assert_close(project_points(lifted, camera.viewmats, camera.Ks)[0], keypoint, atol=1e-3, rtol=0)


def test_keypoint_far_from_the_object_takes_the_median_depth(blob_render):
    camera, depth, alpha = blob_render
    keypoint = torch.tensor([[2.5, 2.5]])  # an image corner, far from both blobs
    lifted = lift_keypoints(keypoint, depth, alpha, camera.viewmats[0], camera.Ks[0], search_radius=2)
    median = depth[alpha >= 0.5].median()
    assert camera_depth(lifted, camera).item() == pytest.approx(median.item(), abs=1e-4)


def textured_image(size=64, seed=0):
    """Smooth random colours: distinctive 7x7 patches, yet no pixel-scale noise."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, size // 2, size // 2, generator=generator)
    return F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)


SUPPORT_KEYPOINTS = torch.tensor([[20.5, 30.5], [40.5, 15.5], [33.2, 44.7], [12.5, 50.5]])


def test_template_detector_finds_the_support_keypoints_on_the_support_image():
    image = textured_image()
    detector = TemplateMatchingDetector(image, SUPPORT_KEYPOINTS)
    assert isinstance(detector, KeypointDetector) and detector.num_keypoints == 4
    found = detector(image[None])  # [1, N, 2]
    assert (found[0] - SUPPORT_KEYPOINTS).norm(dim=-1).max() < 1.0


def test_template_detector_follows_a_shift():
    image = textured_image(seed=1)
    detector = TemplateMatchingDetector(image, SUPPORT_KEYPOINTS)
    shifted = torch.roll(image, shifts=(-2, 3), dims=(0, 1))  # content moves +3 in x, -2 in y
    found = detector(torch.stack([image, shifted]))  # [2, N, 2]
    expected = SUPPORT_KEYPOINTS + torch.tensor([3.0, -2.0])
    assert (found[1] - expected).norm(dim=-1).max() < 1.0
    assert (found[0] - SUPPORT_KEYPOINTS).norm(dim=-1).max() < 1.0


def test_template_detector_is_differentiable_in_the_query_image():
    image = textured_image(seed=2)
    detector = TemplateMatchingDetector(image, SUPPORT_KEYPOINTS)
    query = (image + 0.05 * torch.randn_like(image)).clamp(0, 1)[None].requires_grad_()
    detector(query).sum().backward()
    assert torch.isfinite(query.grad).all() and query.grad.abs().sum() > 0
