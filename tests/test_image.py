"""Loading and preprocessing the input image."""

import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.data.image import load_reference_image
from dynapose4d.errors import DynaPoseError


def write(path, array, mode):
    Image.fromarray(array, mode).save(path)
    return path


def box_image(height=60, width=90, top=10, left=50, box=(20, 30)):
    """An orange box on a transparent canvas, off centre."""
    pixels = np.zeros((height, width, 4), dtype=np.uint8)
    pixels[top : top + box[0], left : left + box[1]] = (230, 120, 20, 255)
    return pixels


def foreground_box(rgba: torch.Tensor):
    rows, cols = torch.nonzero(rgba[..., 3] > 0.5, as_tuple=True)
    return rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()


def test_recentring_fills_one_minus_the_border_and_centres_the_object(tmp_path):
    path = write(tmp_path / "box.png", box_image(), "RGBA")
    reference = load_reference_image(path, 64, border_ratio=0.2)
    top, bottom, left, right = foreground_box(reference)
    assert right - left + 1 == pytest.approx(0.8 * 64, abs=1)  # the longer side (30 px) -> 51 px
    assert bottom - top + 1 == pytest.approx(0.8 * 64 * 20 / 30, abs=1)
    assert (left + right) / 2 == pytest.approx(31.5, abs=1) and (top + bottom) / 2 == pytest.approx(31.5, abs=1)
    inside = reference[top + 2 : bottom - 1, left + 2 : right - 1, :3]
    assert torch.allclose(inside, torch.tensor([230, 120, 20]) / 255.0, atol=2 / 255)


def test_without_a_border_ratio_the_framing_is_kept(tmp_path):
    path = write(tmp_path / "box.png", box_image(height=90), "RGBA")  # square 90 x 90
    reference = load_reference_image(path, 90, border_ratio=None)
    assert foreground_box(reference) == (10, 29, 50, 79)


def test_rgb_image_with_a_mask_file(tmp_path):
    rgba = box_image()
    image = write(tmp_path / "rgb.png", rgba[..., :3].copy(), "RGB")
    mask = write(tmp_path / "mask.png", rgba[..., 3].copy(), "L")
    from_mask = load_reference_image(image, 64, mask=mask)
    from_alpha = load_reference_image(write(tmp_path / "rgba.png", rgba, "RGBA"), 64)
    torch.testing.assert_close(from_mask[..., 3], from_alpha[..., 3])


def test_mask_of_another_size_is_refused(tmp_path):
    image = write(tmp_path / "rgb.png", box_image()[..., :3].copy(), "RGB")
    mask = write(tmp_path / "mask.png", np.zeros((10, 10), dtype=np.uint8), "L")
    with pytest.raises(DynaPoseError, match="mask .* is 10x10 but the image is 90x60"):
        load_reference_image(image, 64, mask=mask)


class FakeRembgSession:
    """Stands in for rembg's U²-Net session (whose model tests cannot download): the left half is the object."""

    def __init__(self):
        self.images = 0

    def predict(self, image, *args, **kwargs):
        self.images += 1
        mask = np.zeros((image.height, image.width), dtype=np.uint8)
        mask[:, : image.width // 2] = 255
        return [Image.fromarray(mask, "L")]


def fake_rembg(monkeypatch, module: str = "dynapose4d.data.image") -> list[FakeRembgSession]:
    """Make `module`'s rembg_session hand out fakes; the list holds each one made."""
    sessions = []

    def new_session():
        sessions.append(FakeRembgSession())
        return sessions[-1]

    monkeypatch.setattr(f"{module}.rembg_session", new_session)
    return sessions


def rembg_offline(monkeypatch, home) -> str:
    """rembg installed, its model never downloaded into `home`, and no network; its model directory."""
    import pooch
    import requests

    monkeypatch.setenv("U2NET_HOME", str(home))  # both of rembg's model directories are under it

    def no_network(url, *args, **kwargs):
        raise requests.exceptions.ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(pooch, "retrieve", no_network)  # where rembg downloads its model
    return str(home / "models" / "u2net")


def test_rgb_without_a_mask_is_cut_out_by_rembg(tmp_path, monkeypatch):
    sessions = fake_rembg(monkeypatch)
    image = write(tmp_path / "rgb.png", np.full((64, 64, 3), 200, dtype=np.uint8), "RGB")
    alpha = load_reference_image(image, 64, border_ratio=None)[..., 3]
    assert len(sessions) == 1 and sessions[0].images == 1
    assert alpha[:, :31].min() > 0.99 and alpha[:, 33:].max() < 0.01


def test_rgb_without_a_mask_when_rembg_cannot_load_its_model_names_the_fixes(tmp_path, monkeypatch):
    model_dir = rembg_offline(monkeypatch, tmp_path / "rembg-home")
    image = write(tmp_path / "rgb.png", box_image()[..., :3].copy(), "RGB")
    with pytest.raises(DynaPoseError) as error:
        load_reference_image(image, 64)
    message = str(error.value)
    assert "has no alpha channel: give mask=path/to/mask.png" in message
    assert f"u2net.onnx is not in {model_dir}" in message and "download https://" in message
    assert "\n" not in message


def test_rgb_without_mask_or_rembg_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "rembg", None)  # as if rembg were not installed
    image = write(tmp_path / "rgb.png", box_image()[..., :3].copy(), "RGB")
    with pytest.raises(DynaPoseError, match="mask=path/to/mask.png.*rembg is not installed"):
        load_reference_image(image, 64)
