"""Benchmark metrics: PSNR/SSIM as Consistent4D computes them, the Fréchet distance, I3D features
through a torchscript stand-in, CLIP on a tiny random model, and metrics skipped without weights."""

import math

import numpy as np
import pytest
import torch

from dynapose4d.errors import DynaPoseError
from dynapose4d.eval.fvd import (
    FVDPool,
    consistent4d_view_fvd,
    frechet_distance,
    fvd_from_features,
    i3d_features,
    i3d_input,
    load_i3d,
)
from dynapose4d.eval.image_metrics import psnr, ssim
from dynapose4d.eval.scoring import score_animate124, score_consistent4d, summarize_consistent4d
from dynapose4d.eval.suite import MetricSuite
from dynapose4d.pretrained.clip import load_clip


def test_psnr_uses_the_target_range():
    target = torch.zeros(4, 4, 3)
    target[0, 0] = 1.0  # the target spans 0..1: data range 1
    prediction = target.clone()
    prediction[2, 2, 1] = 0.1  # one of 48 values off by 0.1: mse = 0.01 / 48
    assert psnr(prediction, target) == pytest.approx(10 * math.log10(4800))  # 36.81 dB
    # torchmetrics' data_range=None: a target spanning 0.2..0.7 has range 0.5, i.e. 20 log10(0.5) dB less
    narrow = target * 0.5 + 0.2
    assert psnr(narrow + (prediction - target), narrow) == pytest.approx(10 * math.log10(1200))
    assert psnr(target, target) == math.inf


def _torchmetrics_ssim(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """torchmetrics' SSIM algorithm, written out: Gaussian 11-tap kernel (sigma 1.5), valid region,
    data range = the larger max - min of the two images."""
    x, y = (image.double().permute(2, 0, 1)[None] for image in (prediction, target))  # [1, 3, H, W]
    data_range = max(float(x.max() - x.min()), float(y.max() - y.min()))
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    taps = torch.arange(11, dtype=torch.float64) - 5
    gauss = torch.exp(-(taps**2) / (2 * 1.5**2))
    gauss = gauss / gauss.sum()
    kernel = (gauss[:, None] * gauss[None, :]).expand(3, 1, 11, 11)
    blur = lambda image: torch.nn.functional.conv2d(image, kernel, groups=3)  # noqa: E731
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean().item()


def test_ssim_is_torchmetrics_gaussian_ssim():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(24, 24, 3, generator=generator) * 0.6 + 0.2
    prediction = (target + 0.1 * torch.randn(24, 24, 3, generator=generator)).clamp(0, 1)
    expected = _torchmetrics_ssim(prediction, target)
    assert ssim(prediction, target) == pytest.approx(expected, abs=1e-9)
    # the data range comes from the images: scaling both leaves SSIM unchanged (a fixed range would not)
    assert ssim(prediction * 0.5, target * 0.5) == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])  # a zero variance: rank-deficient
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + 0.5 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)


def test_fvd_needs_two_videos_a_side():
    with pytest.raises(DynaPoseError, match="at least two videos"):
        fvd_from_features(np.ones((1, 4)), np.ones((3, 4)))
    with pytest.raises(DynaPoseError, match="non-finite"):
        frechet_distance(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2), np.eye(2))


class StandInI3D(torch.nn.Module):
    """The call of StyleGAN-V's i3d_torchscript.pt; features: per-channel mean and std of the clip."""

    def forward(
        self, videos: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("expected rescale=False, resize=False, return_features=True")
        if videos.shape[1] != 3 or videos.shape[3] != 224 or videos.shape[4] != 224:
            raise RuntimeError("expected videos [N, 3, T, 224, 224]")
        return torch.cat([videos.mean(dim=(2, 3, 4)), videos.std(dim=(2, 3, 4))], dim=1)


@pytest.fixture(scope="module")
def stand_in_i3d(tmp_path_factory):
    path = tmp_path_factory.mktemp("i3d") / "i3d_torchscript.pt"
    torch.jit.script(StandInI3D()).save(str(path))
    return load_i3d(str(path))


def test_i3d_features_get_clips_in_minus_one_to_one(stand_in_i3d):
    videos = torch.stack([torch.ones(3, 16, 16, 3), torch.zeros(3, 16, 16, 3)])  # [N=2, T=3, 16, 16, 3]
    features = i3d_features(stand_in_i3d, videos)  # [2, 6]
    np.testing.assert_allclose(features[:, :3], [[1, 1, 1], [-1, -1, -1]], atol=1e-6)


def test_fvd_pool_gathers_every_view(stand_in_i3d):
    generator = torch.Generator().manual_seed(1)
    real = torch.rand(4, 3, 16, 16, 3, generator=generator)  # [V, T, H, W, 3]
    pool = FVDPool(stand_in_i3d)
    pool.add("a", real, real)
    pool.add("b", real.flip(0), real.flip(0))
    assert sum(len(features) for features in pool.real.values()) == 8
    assert pool.pooled() == pytest.approx(0, abs=1e-9)
    assert pool.consistent4d() == {"mean": pytest.approx(0, abs=1e-9), "per_object": {"a": 0.0, "b": 0.0},
                                   "network": "StyleGAN-V torchscript I3D features"}  # fmt: skip
    pool.add("c", real, real * 0.5)  # darker renders: the generated feature mean moves
    assert pool.pooled() > 0.1 and pool.consistent4d()["per_object"]["c"] > 0.1


def test_missing_i3d_says_where_to_get_it():
    with pytest.raises(DynaPoseError, match="eval.fvd_i3d") as error:
        load_i3d(None)
    assert "i3d_torchscript.pt" in str(error.value)


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised tiny CLIP with a PIL image processor working at 16x16 (no resizing)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(0)
    layers = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(vocab_size=64, max_position_embeddings=8, **layers),
        vision_config=dict(image_size=16, patch_size=8, **layers),
        projection_dim=8,
    )
    directory = tmp_path_factory.mktemp("clip") / "tiny-clip"
    CLIPModel(config).save_pretrained(directory)
    CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(directory)
    return directory


def test_clip_similarity_is_the_cosine_of_image_embeddings(tiny_clip_dir):
    from dynapose4d.pretrained.clip import clip_similarity

    clip = load_clip(str(tiny_clip_dir))
    generator = torch.Generator().manual_seed(2)
    images = (torch.rand(2, 16, 16, 3, generator=generator) * 255).round() / 255  # on the 8-bit grid
    reference = (torch.rand(16, 16, 3, generator=generator) * 255).round() / 255

    def embed(image):  # the processor by hand: rescale, normalise with CLIP's mean/std, channels first
        mean, std = torch.tensor(clip.processor.image_mean), torch.tensor(clip.processor.image_std)
        pixels = ((image - mean) / std).permute(2, 0, 1)[None]
        with torch.no_grad():
            features = clip.model.get_image_features(pixel_values=pixels)
        return getattr(features, "pooler_output", features)[0].numpy()

    expected = np.mean(
        [embed(i) @ embed(reference) / np.linalg.norm(embed(i)) / np.linalg.norm(embed(reference)) for i in images]
    )
    assert clip_similarity(clip, images, reference) == pytest.approx(expected, abs=1e-5)
    assert clip_similarity(clip, images, images) == pytest.approx(1.0, abs=1e-5)  # frame by frame

    suite = MetricSuite(clip=clip)
    video = images[None]  # [V=1, T=2, 16, 16, 3]
    scores = score_animate124(video, reference, suite)
    assert scores["clip"]["mean"] == pytest.approx(expected, abs=1e-5)


def test_suite_skips_metrics_without_weights_and_says_why(offline_hub, monkeypatch, tmp_path, tiny_clip_dir):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-torch-hub"))
    suite = MetricSuite.build(local_only=True)  # benchmark defaults: LPIPS-VGG, CLIP ViT-B/32, no I3D path
    assert suite.lpips is None and suite.clip is None and suite.i3d is None
    assert "vgg16" in suite.skipped["lpips"] and "eval.lpips_net" in suite.skipped["lpips"]
    assert "openai/clip-vit-base-patch32" in suite.skipped["clip"] and "eval.clip_model" in suite.skipped["clip"]
    assert "eval.fvd_i3d" in suite.skipped["fvd"]

    gt = torch.rand(4, 2, 16, 16, 3)
    scores = score_consistent4d(gt, gt, suite, size=16)
    assert scores["psnr"]["per_view"] == [math.inf] * 4 and scores["ssim"]["mean"] == pytest.approx(1.0)
    assert scores["lpips"] == {"skipped": suite.skipped["lpips"]}
    summary = summarize_consistent4d({"a": scores}, suite, fvd_pool=None)
    assert summary["clip"] == {"skipped": suite.skipped["clip"]} and summary["fvd"] == {"skipped": suite.skipped["fvd"]}

    assert MetricSuite.build(clip_model=str(tiny_clip_dir), local_only=True).clip is not None
    with pytest.raises(DynaPoseError, match="eval.lpips_net"):
        MetricSuite.build(lpips_net="squeezenet")


def test_lpips_and_pooled_fvd_in_consistent4d_scores(stand_in_i3d):
    import lpips

    # the real linear heads on a random backbone (the backbone weights are not available offline)
    suite = MetricSuite(lpips=lpips.LPIPS(net="alex", pnet_rand=True, verbose=False), i3d=stand_in_i3d)
    generator = torch.Generator().manual_seed(3)
    gt = torch.rand(4, 2, 16, 16, 3, generator=generator)
    pool = FVDPool(suite.i3d)
    same = score_consistent4d(gt, gt, suite, size=64, fvd_pool=pool, name="same")  # AlexNet needs more than 16 px
    assert same["lpips"]["per_view"] == pytest.approx([0.0] * 4, abs=1e-6)
    other = score_consistent4d(gt.flip(1), gt, suite, size=64, fvd_pool=pool, name="other")
    assert other["lpips"]["mean"] > 0
    summary = summarize_consistent4d({"same": same, "other": other}, suite, pool)
    assert summary["lpips"]["per_object"]["same"] == same["lpips"]["mean"]
    assert summary["fvd_pooled"]["mean"] == pytest.approx(0, abs=1e-9)  # flipped in time: same per-clip statistics
    assert summary["fvd"]["mean"] == pytest.approx(0, abs=1e-9)


def test_consistent4d_view_fvd_is_the_numpy_1_formula_computed_by_hand():
    """compute_fvd.py under numpy 1.x: mu = the feature row, sigma = its scalar variance over the D features."""
    real, generated = np.array([1.0, 2.0, 3.0, 6.0]), np.array([0.0, 2.0, 5.0, 5.0])
    # |d|^2 = 1 + 0 + 4 + 1 = 6; variances (ddof=1): real mean 3 -> (4+1+0+9)/3 = 14/3, generated mean 3 -> 18/3
    s1, s2 = 14 / 3, 18 / 3
    expected = 6 + s1 + s2 - 2 * np.sqrt(s1 * s2)
    assert consistent4d_view_fvd(real, generated) == pytest.approx(expected, rel=1e-12)
    assert consistent4d_view_fvd(real, real) == 0.0


def test_consistent4d_fvd_averages_views_then_objects(stand_in_i3d):
    """A hand-made layout: object a's views differ by 0 and by a shift, object b's by nothing."""
    generator = torch.Generator().manual_seed(4)
    real = torch.rand(2, 3, 16, 16, 3, generator=generator)  # [V=2, T, H, W, 3]
    shifted = real.clone()
    shifted[1] = (shifted[1] * 0.5).clamp(0, 1)
    pool = FVDPool(stand_in_i3d)
    pool.add("a", real, shifted)
    pool.add("b", real, real)
    features_real, features_shifted = i3d_features(stand_in_i3d, real[1:]), i3d_features(stand_in_i3d, shifted[1:])
    view = consistent4d_view_fvd(features_real[0], features_shifted[0])
    result = pool.consistent4d()
    assert view > 0
    assert result["per_object"] == {"a": pytest.approx(view / 2), "b": 0.0}
    assert result["mean"] == pytest.approx(view / 4)


def test_the_benchmark_s_i3d_state_dict_gives_time_averaged_logits_to_both_fvds(tmp_path):
    """i3d_pretrained_400.pt's format (a torch.save state dict of pytorch-i3d's network) loads as that network."""
    from dynapose4d.pretrained.i3d import InceptionI3d, time_averaged_logits

    torch.manual_seed(0)
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(InceptionI3d(400, in_channels=3).state_dict(), path)
    i3d = load_i3d(str(path))
    assert isinstance(i3d, InceptionI3d) and not i3d.training
    videos = torch.rand(2, 9, 24, 24, 3, generator=torch.Generator().manual_seed(5))  # [V, T, H, W, 3]
    features = i3d_features(i3d, videos)  # [2, 400]
    with torch.no_grad():
        batch = torch.stack([i3d_input(video) for video in videos])  # [2, 3, 9, 224, 224]
        expected = time_averaged_logits(i3d, i3d.features(batch)).double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-6)
    pool = FVDPool(i3d)
    pool.add("a", videos, videos.flip(0))
    assert pool.consistent4d()["network"].startswith("pytorch-i3d") and pool.consistent4d()["mean"] > 0
