"""PNG and mp4 I/O, image grids and atomic writes."""

import imageio.v2 as imageio
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from dynapose4d.media import atomic_output, image_grid, load_png, save_png, to_uint8, write_video


def test_to_uint8_clamps_and_rounds():
    image = torch.tensor([-0.5, 0.0, 0.499 / 255, 0.501 / 255, 0.5, 1.0, 2.0])
    assert to_uint8(image).tolist() == [0, 0, 0, 1, 128, 255, 255]
    assert to_uint8(np.zeros((2, 2, 3))).dtype == np.uint8


@pytest.mark.parametrize("channels", [3, 4])
def test_png_round_trip_exact_after_quantisation(tmp_path, channels):
    image = torch.rand(5, 7, channels, generator=torch.Generator().manual_seed(channels))
    path = tmp_path / "image.png"
    save_png(path, image)
    loaded = load_png(path)
    assert loaded.shape == (5, 7, channels) and loaded.dtype == torch.float32
    assert torch.equal(loaded, torch.from_numpy(to_uint8(image)).float() / 255.0)
    save_png(path, loaded)  # a quantised image survives a second trip unchanged
    assert torch.equal(load_png(path), loaded)
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


def test_save_png_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match="H, W, 3"):
        save_png(tmp_path / "x.png", torch.zeros(1, 4, 4, 3))


def test_load_png_grey_and_16_bit(tmp_path):
    imageio.imwrite(tmp_path / "grey.png", np.array([[0, 255], [51, 102]], dtype=np.uint8))
    grey = load_png(tmp_path / "grey.png")
    assert grey.shape == (2, 2, 1)
    torch.testing.assert_close(grey[..., 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))
    imageio.imwrite(tmp_path / "deep.png", np.array([[0, 65535], [13107, 26214]], dtype=np.uint16))
    deep = load_png(tmp_path / "deep.png")  # scaled by 65535, not 255
    torch.testing.assert_close(deep[..., 0], torch.tensor([[0.0, 1.0], [0.2, 0.4]]))


def test_write_video_frames_and_colours(tmp_path):
    # Odd size (padded to even), frames with distinct flat colours.
    colours = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])
    frames = colours[:, None, None, :].expand(5, 33, 21, 3)  # [T, H, W, 3]
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=10)
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
    assert (height, width) == (34, 22)  # padded to even for yuv420p
    decoded = np.stack([np.frombuffer(frame, np.uint8) for frame in reader]).reshape(-1, height, width, 3)
    assert decoded.shape[0] == 5
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["fps"] == 10
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    decoded = decoded.astype(np.float32) / 255.0
    np.testing.assert_allclose(decoded.mean(axis=(1, 2)), colours.numpy(), atol=0.03)


def test_write_video_rejects_rgba_without_writing(tmp_path):
    with pytest.raises(ValueError, match="T, H, W, 3"):
        write_video(tmp_path / "x.mp4", torch.zeros(2, 8, 8, 4))
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "result.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        assert tmp.endswith(".txt")
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]


def test_image_grid_places_images_row_major():
    images = torch.arange(5.0)[:, None, None, None].expand(5, 2, 3, 1)  # image b is filled with b
    grid = image_grid(images, columns=2, fill=-1.0)
    assert grid.shape == (3 * 2, 2 * 3, 1)
    cells = grid[::2, ::3, 0]  # top-left pixel of each cell, [rows, columns]
    assert cells.tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, -1.0]]
    # Every pixel of a cell belongs to its image.
    assert torch.equal(grid[2:4, 3:6], images[3])
    assert torch.equal(image_grid(images, columns=5), torch.cat(list(images), dim=1))
