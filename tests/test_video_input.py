"""Reading a user's video for video-to-4D: frame order, one framing for the clip, masks, bad inputs."""

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from test_image import fake_rembg, rembg_offline

from dynapose4d.data.image import load_reference_image
from dynapose4d.data.video_input import load_video_frames
from dynapose4d.errors import DynaPoseError
from dynapose4d.media import write_video

COUNT, HEIGHT, WIDTH, BOX = 12, 48, 80, (12, 16)


def moving_box(index: int) -> np.ndarray:
    """Frame `index` [H, W, 4] uint8: a box walking right on a transparent canvas, its red channel = 20 * index."""
    pixels = np.zeros((HEIGHT, WIDTH, 4), dtype=np.uint8)
    top, left = 20, 4 + 5 * index
    pixels[top : top + BOX[0], left : left + BOX[1]] = (20 * index, 120, 200, 255)
    return pixels


def write_frames(directory, name="{}.png", count=COUNT, mode="RGBA"):
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        frame = moving_box(index)
        Image.fromarray(frame if mode == "RGBA" else frame[..., 3].copy(), mode).save(directory / name.format(index))
    return directory


def box_of(alpha: torch.Tensor):
    rows, cols = torch.nonzero(alpha > 0.5, as_tuple=True)
    return rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()


def mean_red(frame: torch.Tensor) -> float:
    return frame[..., 0][frame[..., 3] > 0.99].mean().item()


def test_frames_are_read_in_numeric_order(tmp_path):
    frames = load_video_frames(write_frames(tmp_path / "clip"), 80, border_ratio=None)
    assert frames.shape == (COUNT, 80, 80, 4)  # "10.png" sorts after "9.png", not after "1.png"
    assert [round(mean_red(frame) * 255 / 20) for frame in frames] == list(range(COUNT))


def test_zero_padded_names_frame_step_and_max_frames(tmp_path):
    frames = load_video_frames(
        write_frames(tmp_path / "clip", "frame_{:04d}.png"), 80, border_ratio=None, max_frames=4, frame_step=3
    )
    assert [round(mean_red(frame) * 255 / 20) for frame in frames] == [0, 3, 6, 9]


def test_one_crop_for_the_clip_keeps_the_moving_object_s_size(tmp_path):
    size, border = 64, 0.2
    frames = load_video_frames(write_frames(tmp_path / "clip"), size, border_ratio=border)
    boxes = [box_of(frame[..., 3]) for frame in frames]
    widths = {right - left for _, _, left, right in boxes}
    heights = {bottom - top for top, bottom, _, _ in boxes}
    assert max(widths) - min(widths) <= 1 and max(heights) - min(heights) <= 1  # same size in every frame
    lefts = [left for _, _, left, _ in boxes]
    assert lefts == sorted(lefts) and lefts[-1] - lefts[0] > size / 2  # it still walks across the frame
    span = boxes[-1][3] - boxes[0][2] + 1  # the union of the boxes fills 1 - border of the frame
    assert span == pytest.approx((1 - border) * size, abs=1)
    assert boxes[0][2] + boxes[-1][3] == pytest.approx(size - 1, abs=1)  # ... and is centred


def test_video_file_with_a_directory_of_masks(tmp_path):
    rgba = np.stack([moving_box(index) for index in range(COUNT)])
    on_white = torch.from_numpy(rgba[..., :3] * (rgba[..., 3:] > 0) + 255 * (rgba[..., 3:] == 0)) / 255.0
    video = tmp_path / "clip.mp4"
    write_video(video, on_white, fps=10)
    masks = write_frames(tmp_path / "masks", mode="L")
    frames = load_video_frames(video, 64, border_ratio=0.2, masks=masks)
    expected = load_video_frames(write_frames(tmp_path / "rgba"), 64, border_ratio=0.2)
    assert frames.shape == (COUNT, 64, 64, 4)
    torch.testing.assert_close(frames[..., 3], expected[..., 3])  # the masks are the alpha, exactly
    inside = expected[..., 3] > 0.99
    assert (frames[..., :3] - expected[..., :3]).abs()[inside].mean() < 0.05  # lossy video, same colours


def test_rgb_frames_without_masks_or_rembg_say_what_to_give(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rembg", None)  # as if rembg were not installed
    video = tmp_path / "clip.mp4"
    write_video(video, torch.rand(3, 32, 32, 3))
    with pytest.raises(DynaPoseError, match="masks=.*rembg is not installed"):
        load_video_frames(video, 32, border_ratio=0.2)


def test_rgb_frames_when_rembg_cannot_load_its_model_say_what_to_give(tmp_path, monkeypatch):
    model_dir = rembg_offline(monkeypatch, tmp_path / "rembg-home")
    video = tmp_path / "clip.mp4"
    write_video(video, torch.rand(3, 32, 32, 3))
    with pytest.raises(DynaPoseError, match=f"masks=.*u2net.onnx is not in {model_dir}"):
        load_video_frames(video, 32, border_ratio=0.2)


def test_rgb_frames_are_cut_out_with_one_rembg_session(tmp_path, monkeypatch):
    sessions = fake_rembg(monkeypatch)
    video = tmp_path / "clip.mp4"
    write_video(video, torch.full((3, 32, 32, 3), 0.6))
    frames = load_video_frames(video, 32, border_ratio=None)
    assert len(sessions) == 1 and sessions[0].images == 3
    assert frames[:, :, :15, 3].min() > 0.99 and frames[:, :, 17:, 3].max() < 0.01


def test_masks_must_match_the_frames(tmp_path):
    clip = write_frames(tmp_path / "clip")
    with pytest.raises(DynaPoseError, match="has 5 frames but"):
        load_video_frames(clip, 32, masks=write_frames(tmp_path / "few", count=5, mode="L"))
    small = tmp_path / "small"
    small.mkdir()
    for index in range(COUNT):
        Image.new("L", (8, 8), 255).save(small / f"{index}.png")
    with pytest.raises(DynaPoseError, match="are 8x8 but the frames are 80x48"):
        load_video_frames(clip, 32, masks=small)


def missing(tmp_path):
    return tmp_path / "nowhere"


def empty_directory(tmp_path):
    (tmp_path / "clip").mkdir()
    return tmp_path / "clip"


def garbage_video(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"not a video")
    return tmp_path / "clip.mp4"


def single_image(tmp_path):
    Image.fromarray(moving_box(0)).save(tmp_path / "frame.png")
    return tmp_path / "frame.png"


@pytest.mark.parametrize(
    "make, message",
    [
        (missing, "input video not found"),
        (empty_directory, "has no frames"),
        (garbage_video, "cannot read the video .*Invalid data"),
        (single_image, "is not a video: give a directory of frames or a video file"),
    ],
)
def test_bad_inputs_are_refused_clearly(tmp_path, make, message):
    with pytest.raises(DynaPoseError, match=message):
        load_video_frames(make(tmp_path), 32)


def test_bad_frame_directories_are_refused_clearly(tmp_path):
    clip = write_frames(tmp_path / "clip", count=3)
    (clip / "notes.txt").write_text("shot on a phone")
    with pytest.raises(DynaPoseError, match="only frame images .* found notes.txt"):
        load_video_frames(clip, 32)
    (clip / "notes.txt").unlink()
    (clip / "3.png").write_bytes(b"not a png")
    with pytest.raises(DynaPoseError, match="cannot read .*3.png"):
        load_video_frames(clip, 32)
    Image.new("RGBA", (10, 10)).save(clip / "3.png")
    with pytest.raises(DynaPoseError, match="3.png is 10x10 but .*0.png is 80x48"):
        load_video_frames(clip, 32)
    Image.new("RGBA", (WIDTH, HEIGHT)).save(clip / "3.png")  # the object left the frame
    with pytest.raises(DynaPoseError, match="3.png has no foreground"):
        load_video_frames(clip, 32)


def test_a_single_frame_is_framed_like_the_input_image(tmp_path):
    clip = write_frames(tmp_path / "clip", count=1)
    torch.testing.assert_close(
        load_video_frames(clip, 64, border_ratio=0.2)[0], load_reference_image(clip / "0.png", 64, border_ratio=0.2)
    )


def test_a_frame_step_below_one_is_refused(tmp_path):
    with pytest.raises(DynaPoseError, match="frame step must be at least 1"):
        load_video_frames(write_frames(tmp_path / "clip", count=2), 32, frame_step=0)


def test_the_pre_flight_knows_which_clips_rembg_must_cut_out(tmp_path):
    from dynapose4d.data.video_input import clip_without_masks

    clip = write_frames(tmp_path / "clip", count=3)
    assert clip_without_masks(clip) is None  # every frame has a mask of its own
    Image.fromarray(moving_box(1)[..., :3].copy()).save(clip / "1.png")  # one RGB frame among them
    assert clip_without_masks(clip).startswith(f"{clip / '1.png'} has no alpha channel; or give RGBA frames, or masks=")
    assert clip_without_masks(clip, frame_step=2) is None  # frames 0 and 2 only
    video = tmp_path / "clip.mp4"
    write_video(video, torch.rand(2, 16, 16, 3))
    assert clip_without_masks(video).startswith(f"the frames of {video} have no alpha channel; or give")
    assert clip_without_masks(tmp_path / "nowhere") is None  # reading it says what is wrong
