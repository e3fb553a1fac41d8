"""The ground-truth sample format as a third party meets it: samples written by hand from the README (file by
file, never by save_sample), read by load_sample; and the README's camera example run against cameras.py."""

import json
import re
import struct
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.cameras import orbit_cameras
from dynapose4d.data.sample import SampleError, load_sample
from dynapose4d.media import load_png

README = Path(__file__).resolve().parents[1] / "README.md"
SIZE, FRAMES = 8, 2  # pixels on a side of image.png and driving/, and the clip's frames


def readme_orbit_camera():
    """`orbit_camera` as the README's "Bring your own ground truth" section writes it, executed from there."""
    section = README.read_text().split("## Bring your own ground truth")[1].split("\n## ")[0]
    code = re.search(r"```python\n(.*?)\n\s*```", section, re.S).group(1)
    namespace = {}
    exec(textwrap.dedent(code), namespace)
    return namespace["orbit_camera"]


def frame_image(t: int, size: int = SIZE) -> np.ndarray:
    """An RGBA uint8 frame [size, size, 4]: an opaque square that moves with t, colour under the transparent rest."""
    image = np.zeros((size, size, 4), np.uint8)
    image[..., 0] = 40 * t + 7  # straight colour everywhere, alpha decides what shows
    image[2 : size - 2, 1 + t : size - 3 + t, 1:] = (200, 90, 255)
    return image


def write_png(path: Path, rgba: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


def write_png16(path: Path, rgba: np.ndarray) -> None:
    """A 16-bit RGBA PNG [H, W, 4] uint16, chunk by chunk (PNG spec, colour type 6), independent of any library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = rgba.shape[:2]
    rows = b"".join(b"\x00" + rgba[row].astype(">u2").tobytes() for row in range(height))  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))  # fmt: skip


def write_sample(directory: Path, eval_sizes=(SIZE, SIZE), train_size: int = 6) -> Path:
    """A sample as the README describes it: two held-out views (one by K and world_to_camera), one training view."""
    write_png(directory / "image.png", frame_image(0))
    for t in range(FRAMES):
        write_png(directory / "driving" / f"{t:03d}.png", frame_image(t))
        for view, size in enumerate(eval_sizes):
            write_png(directory / "eval" / f"{view:02d}" / f"{t:03d}.png", frame_image(t, size))
    write_png(directory / "train" / "00" / "000.png", frame_image(0, train_size))
    world_to_camera, K = readme_orbit_camera()(10.0, 90.0, size=eval_sizes[1])
    meta = {
        "format": "dynapose4d-sample/1",
        "num_frames": FRAMES,
        "reference": {"elevation": 0, "radius": 2.0, "fovy": 49.1},
        "eval_views": [{"elevation": 0, "azimuth": 45}, {"world_to_camera": world_to_camera.tolist(), "K": K.tolist()}],
        "train_views": [{"elevation": -30, "azimuth": 20}],
        "train_frames": 1,
        "keypoints": {
            "names": ["a", "b"],
            "bones": [[0, 1]],
            "frames": [[[1.5, 2.5], [5.0, 4.5]]] * FRAMES,
            "frames3d": [[[0.0, 0.5, 0.0], [0.2, -0.1, 0.3]]] * FRAMES,
        },
    }
    (directory / "sample.json").write_text(json.dumps(meta))
    return directory


def test_a_sample_written_from_the_readme_loads_byte_exact_with_its_cameras(tmp_path):
    sample = load_sample(write_sample(tmp_path / "sample"))
    assert torch.equal((sample.driving_video[1] * 255).round().byte(), torch.from_numpy(frame_image(1)))
    assert tuple(sample.eval_renders.shape) == (FRAMES, 2, SIZE, SIZE, 4)
    assert tuple(sample.train_renders.shape) == (1, 1, 6, 6, 4)  # train/ has a size of its own
    assert sample.keypoints.frames3d.shape == (FRAMES, 2, 3) and sample.keypoints.frames3d[1, 1, 2] == 0.3
    by_hand, by_orbit = sample.eval_cameras()[1], orbit_cameras(10.0, 90.0, 2.0, 49.1, SIZE, SIZE)
    torch.testing.assert_close(by_hand.viewmats, by_orbit.viewmats, atol=1e-6, rtol=0)
    torch.testing.assert_close(by_hand.Ks, by_orbit.Ks, atol=1e-5, rtol=0)


@pytest.mark.parametrize("elevation, azimuth", [(0, 0), (0, 90), (20, -45), (-30, 200), (60, 135)])
def test_the_readme_camera_example_is_cameras_py(elevation, azimuth):
    world_to_camera, K = readme_orbit_camera()(elevation, azimuth, radius=2.5, fovy=40.0, size=64)
    cameras = orbit_cameras(float(elevation), float(azimuth), 2.5, 40.0, 64, 64)
    torch.testing.assert_close(torch.tensor(world_to_camera, dtype=torch.float32), cameras.viewmats[0], atol=1e-6,
                               rtol=0)  # fmt: skip
    torch.testing.assert_close(torch.tensor(K, dtype=torch.float32), cameras.Ks[0], atol=1e-4, rtol=0)
    if (elevation, azimuth) == (0, 90):  # positive azimuth moves the camera towards +x
        torch.testing.assert_close(cameras.positions[0], torch.tensor([2.5, 0.0, 0.0]), atol=1e-6, rtol=0)


def test_16_bit_pngs_keep_their_16_bits(tmp_path):
    directory = write_sample(tmp_path / "sample")
    gradient = np.zeros((SIZE, SIZE, 4), np.uint16)
    gradient[..., 0] = np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 1021 + 3  # 16-bit steps an 8-bit read loses
    gradient[..., 1] = 65535 - gradient[..., 0]
    gradient[..., 3] = 65535
    for path in (directory / "image.png", directory / "driving" / "000.png"):
        write_png16(path, gradient)
    image = load_sample(directory).image  # [H, W, 4]
    assert torch.equal((image.double() * 65535).round().long(), torch.from_numpy(gradient.astype(np.int64)))
    assert (load_png(directory / "image.png") - torch.from_numpy(gradient / 65535.0)).abs().max() < 1e-7


def test_every_view_of_eval_has_one_size_and_the_error_names_the_odd_one(tmp_path):
    with pytest.raises(SampleError, match=r"eval/01 is 4x4 but .*eval/00 is 8x8: every view of eval/ must have one"):
        load_sample(write_sample(tmp_path / "sample", eval_sizes=(SIZE, 4)))


def test_image_png_is_the_first_driving_frame_to_one_8_bit_step(tmp_path):
    directory = write_sample(tmp_path / "sample")
    image = frame_image(0)
    clear = image[..., 3] == 0
    image[clear, 0] = 255 - image[clear, 0]  # another colour under the transparent pixels: not part of the image
    image[3, 3, 2] += 1  # one step: a re-encoding
    write_png(directory / "image.png", image)
    load_sample(directory)
    image[3, 3, 2] += 2
    write_png(directory / "image.png", image)
    with pytest.raises(SampleError, match=r"image.png differs from driving/000.png by up to 3.0/255 \(1/255 allowed"):
        load_sample(directory)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("driving/002.png", r"driving/002.png: beyond the 2 frame\(s\) of sample.json's num_frames"),
        ("eval/01/002.png", r"eval/01/002.png: beyond the 2 frame\(s\) of sample.json's num_frames"),
        ("train/00/001.png", r"train/00/001.png: beyond the 1 frame\(s\) of sample.json's train_frames"),
        ("eval/02/000.png", r"eval/02: a view beyond the 2 of sample.json's eval_views"),
    ],
)
def test_a_frame_or_view_beyond_sample_json_is_named(tmp_path, extra, message):
    directory = write_sample(tmp_path / "sample")
    write_png(directory / extra, frame_image(0))
    with pytest.raises(SampleError, match=message):
        load_sample(directory)


def test_3d_keypoints_must_be_one_point_per_name_and_frame(tmp_path):
    directory = write_sample(tmp_path / "sample")
    meta = json.loads((directory / "sample.json").read_text())
    meta["keypoints"]["frames3d"] = [[[0.0, 0.5]] * 2] * FRAMES  # x, y only
    (directory / "sample.json").write_text(json.dumps(meta))
    with pytest.raises(SampleError, match=r"keypoints.frames3d must be \[2 frames\]\[2 names\]\[x, y, z\], got shape"):
        load_sample(directory)
