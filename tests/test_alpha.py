"""Straight alpha everywhere: rembg's mask on the image's own colours, resampling premultiplied, opaque alpha."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from test_image import FakeRembgSession, fake_rembg

from dynapose4d.data.image import WHITE, composite, cut_out, load_reference_image, open_image, recenter, resize_square
from dynapose4d.data.video_input import load_video_frames

HALF = 128 / 255  # the closest 8-bit alpha to one half


class MaskSession:
    """Stands in for rembg's U²-Net session (no model offline): it predicts `mask` [H, W] uint8 for any image."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask

    def predict(self, image, *args, **kwargs):
        return [Image.fromarray(self.mask, "L")]


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)  # [H, W, C]


def test_a_half_transparent_edge_of_a_rembg_cut_out_composites_to_its_straight_colour():
    import rembg

    image = Image.new("RGB", (2, 1), (204, 204, 204))  # colour 0.8
    session = MaskSession(np.array([[128, 255]], dtype=np.uint8))  # the left pixel is a half-covered edge
    (ours,) = cut_out([image], session)
    edge = composite(to_tensor(ours), WHITE)[0, 0]  # [3]
    torch.testing.assert_close(edge, torch.full((3,), 0.8 * HALF + 1 - HALF))
    assert edge[0].item() == pytest.approx(0.9, abs=1e-3)
    # rembg's own cut-out (the real `remove`, here on the stand-in session) composites over transparent
    # black: its colour is 0.8 * alpha, so reading it as straight alpha multiplies by alpha twice.
    theirs = to_tensor(rembg.remove(image, session=session))
    assert theirs[0, 0, 0].item() == pytest.approx(0.8 * HALF, abs=1 / 255)
    assert composite(theirs, WHITE)[0, 0, 0].item() == pytest.approx(0.70, abs=2e-3)
    torch.testing.assert_close(to_tensor(ours)[..., 3], theirs[..., 3])  # the same mask


def test_an_exif_rotated_photo_gets_its_mask_the_right_way_up(tmp_path):
    import rembg

    pixels = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3  # [H, W, 3], no two pixels alike
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6  # the camera was turned: show it rotated by 90 degrees
    Image.fromarray(pixels).save(tmp_path / "photo.png", exif=exif)
    photo = open_image(tmp_path / "photo.png")
    (ours,) = cut_out([photo], FakeRembgSession())
    upright = ImageOps.exif_transpose(photo)
    assert ours.size == upright.size == (4, 6)
    np.testing.assert_array_equal(np.asarray(ours)[..., :3], np.asarray(upright))
    theirs = rembg.remove(photo, session=FakeRembgSession())  # rembg predicts on the upright photo too
    np.testing.assert_array_equal(np.asarray(ours)[..., 3], np.asarray(theirs)[..., 3])


def white_disc(height=64, width=80, centre=(24, 30), radius=16.0, edge=4.0) -> torch.Tensor:
    """RGBA [H, W, 4]: a white disc whose alpha falls off over `edge` pixels; black under the transparent
    pixels, as a PNG cut-out stores them."""
    rows, cols = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    distance = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2).sqrt()
    alpha = ((radius - distance) / edge + 0.5).clamp(0, 1)  # [H, W]
    white = (alpha > 0).float()[..., None].expand(height, width, 3)
    return torch.cat([white, alpha[..., None]], dim=-1)


def assert_white_on_white(rgba: torch.Tensor):
    on_white = composite(rgba, WHITE)
    torch.testing.assert_close(on_white, torch.ones_like(on_white), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [24, 100])  # shrinking, growing
def test_resizing_keeps_a_white_disc_on_white_white_and_its_alpha_as_resized_alone(size):
    disc = white_disc(height=64, width=64, centre=(30, 34))
    resized = resize_square(disc[None].expand(2, -1, -1, -1), size)  # [2, S, S, 4]: frames too
    assert_white_on_white(resized)
    alone = torch.nn.functional.interpolate(disc[None, None, ..., 3], size=(size, size), mode="area")[0, 0]
    torch.testing.assert_close(resized[..., 3], alone.expand(2, -1, -1), atol=0, rtol=0)


def test_a_half_covered_pixel_keeps_the_object_s_colour():
    block = torch.tensor([[[0.8, 0.8, 0.8, 1.0], [0.8, 0.8, 0.8, 1.0]], [[0.0, 0.0, 0.0, 0.0]] * 2])  # [2, 2, 4]
    pixel = resize_square(block, 1)[0, 0]  # half the object, half transparent black
    torch.testing.assert_close(pixel, torch.tensor([0.8, 0.8, 0.8, 0.5]))
    assert composite(pixel, WHITE)[0].item() == pytest.approx(0.9)


def test_rgb_is_resized_as_it_is():
    rgb = torch.rand(20, 20, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.interpolate(rgb.permute(2, 0, 1)[None], size=(8, 8), mode="area")[0]
    torch.testing.assert_close(resize_square(rgb, 8), expected.permute(1, 2, 0), atol=0, rtol=0)


def test_recentring_keeps_a_white_disc_on_white_white_and_its_alpha_as_scaled_alone():
    disc, size, border = white_disc(), 48, 0.2
    framed = recenter(disc, size, border)
    assert_white_on_white(framed)
    rows, cols = torch.nonzero(disc[..., 3] > 0.5, as_tuple=True)  # the object's box: square, for a disc
    crop = disc[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1, 3]
    side = round((1 - border) * size)
    alone = torch.nn.functional.interpolate(
        crop[None, None], size=(side, side), mode="bilinear", antialias=True, align_corners=False
    )[0, 0]
    expected = torch.zeros(size, size)
    start = (size - side) // 2
    expected[start : start + side, start : start + side] = alone.clamp(0, 1)
    torch.testing.assert_close(framed[..., 3], expected, atol=0, rtol=0)


def save_disc(path) -> None:
    Image.fromarray((white_disc() * 255).round().to(torch.uint8).numpy(), "RGBA").save(path)


@pytest.mark.parametrize("border_ratio", [0.2, None])  # recentred (torch), or padded and resized (Pillow)
def test_a_white_disc_png_stays_white_on_white_as_image_and_as_clip(tmp_path, border_ratio):
    save_disc(tmp_path / "disc.png")
    assert_white_on_white(load_reference_image(tmp_path / "disc.png", 56, border_ratio=border_ratio))
    (tmp_path / "clip").mkdir()
    save_disc(tmp_path / "clip" / "0.png")
    assert_white_on_white(load_video_frames(tmp_path / "clip", 56, border_ratio=border_ratio))


def opaque_png(path):
    Image.new("RGBA", (64, 64), (200, 100, 50, 255)).save(path)  # a screenshot: alpha 255 everywhere
    return path


def test_an_alpha_channel_opaque_everywhere_is_no_mask_rembg_cuts_the_object_out(tmp_path, monkeypatch, caplog):
    sessions = fake_rembg(monkeypatch)  # the left half is the object
    with caplog.at_level(logging.WARNING):
        reference = load_reference_image(opaque_png(tmp_path / "screenshot.png"), 64, border_ratio=None)
    assert len(sessions) == 1 and sessions[0].images == 1
    assert reference[:, :31, 3].min() > 0.99 and reference[:, 33:, 3].max() < 0.01
    torch.testing.assert_close(reference[:, :31, :3], torch.tensor([200, 100, 50]).expand(64, 31, 3) / 255)
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "screenshot.png has an alpha channel that is opaque everywhere" in warnings[0] and "mask=" in warnings[0]


def test_a_mask_file_wins_over_an_opaque_alpha_channel(tmp_path, monkeypatch, caplog):
    sessions = fake_rembg(monkeypatch)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[20:40, 10:30] = 255
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    with caplog.at_level(logging.WARNING):
        reference = load_reference_image(opaque_png(tmp_path / "shot.png"), 64, tmp_path / "mask.png", None)
    assert not sessions and not [record for record in caplog.records if record.levelno >= logging.WARNING]
    torch.testing.assert_close(reference[..., 3], torch.from_numpy(mask / 255).float())


def test_clip_frames_whose_alpha_is_opaque_everywhere_are_cut_out_by_rembg(tmp_path, monkeypatch, caplog):
    sessions = fake_rembg(monkeypatch)
    (tmp_path / "clip").mkdir()
    for index in range(3):
        opaque_png(tmp_path / "clip" / f"{index}.png")
    with caplog.at_level(logging.WARNING):
        frames = load_video_frames(tmp_path / "clip", 64, border_ratio=None)
    assert len(sessions) == 1 and sessions[0].images == 3
    assert frames[:, :, :31, 3].min() > 0.99 and frames[:, :, 33:, 3].max() < 0.01
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "3 frame(s) of" in warnings[0] and "opaque everywhere" in warnings[0]
