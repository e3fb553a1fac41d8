"""weights_dir=: every model from one directory; the pre-flight names every missing model in one message."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_image import rembg_offline

from dynapose4d.errors import DynaPoseError
from dynapose4d.pipeline import check_stages, pipeline_stages, run
from dynapose4d.weights import point_rembg_at
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]


def write_rgba(path: Path) -> Path:
    pixels = np.zeros((40, 60, 4), dtype=np.uint8)
    pixels[10:30, 20:40] = (200, 80, 40, 255)  # an orange box on a transparent canvas
    Image.fromarray(pixels, "RGBA").save(path)
    return path


@pytest.fixture
def weights_tree(tmp_path, tiny_zero123_dir, tiny_svd_dir, tiny_cape_checkpoint) -> Path:
    """A weights directory laid out as download_weights.py lays it out, holding the tiny random models."""
    root = tmp_path / "weights"
    (root / "poseanything").mkdir(parents=True)
    (root / "zero123-xl").symlink_to(tiny_zero123_dir)
    (root / "svd-img2vid").symlink_to(tiny_svd_dir)
    (root / "poseanything" / "demo_b.pth").symlink_to(tiny_cape_checkpoint)
    return root


def default_config(tmp_path: Path, *extra: str):
    """The default pipeline (Zero123, SVD, PoseAnything) on a real RGBA image."""
    image = write_rgba(tmp_path / "box.png")
    return compose_config([f"image={image}", f"output_dir={tmp_path / 'outputs'}", *extra])


def test_weights_dir_resolves_every_model_of_the_default_pipeline(tmp_path, weights_tree, offline_hub):
    from dynapose4d.pretrained.poseanything.model import load_cape_checkpoint
    from dynapose4d.pretrained.svd import load_svd
    from dynapose4d.pretrained.zero123 import load_zero123

    cfg = default_config(tmp_path, f"weights_dir={weights_tree}")
    check_stages(cfg, tmp_path / "run", pipeline_stages(), redo=[])  # offline, empty hub cache: all from weights_dir
    assert cfg.static.model == cfg.dynamic.model == str(weights_tree / "zero123-xl")
    assert cfg.video.model == str(weights_tree / "svd-img2vid")
    assert cfg.keypoints.checkpoint == str(weights_tree / "poseanything" / "demo_b.pth")
    # What the stages load from those keys are the real formats.
    load_zero123(Path(cfg.static.model), torch.device("cpu"), torch.float32)
    load_svd(cfg.video.model, torch.device("cpu"), local_only=True)
    load_cape_checkpoint(cfg.keypoints.checkpoint)


def test_per_model_keys_win_over_weights_dir(tmp_path, weights_tree, tiny_zero123_dir, offline_hub):
    own = tmp_path / "my-zero123"
    own.symlink_to(tiny_zero123_dir)
    cfg = default_config(tmp_path, f"weights_dir={weights_tree}", f"static.model={own}", "stages=[static]")
    check_stages(cfg, tmp_path / "run", pipeline_stages(), redo=[])
    assert cfg.static.model == str(own)


def test_a_weights_dir_file_damaged_since_its_download_is_named_with_the_fetch_command(
    tmp_path, weights_tree, tiny_cape_checkpoint, offline_hub
):
    checkpoint = weights_tree / "poseanything" / "demo_b.pth"
    checkpoint.unlink()
    checkpoint.write_bytes(Path(tiny_cape_checkpoint).read_bytes()[:-10])  # a copy cut short after the download
    digest = hashlib.sha256(Path(tiny_cape_checkpoint).read_bytes()).hexdigest()
    checkpoint.with_name("demo_b.pth.sha256").write_text(f"{digest}  demo_b.pth\n")  # what the download recorded
    cfg = default_config(tmp_path, f"weights_dir={weights_tree}")
    with pytest.raises(DynaPoseError) as error:
        run(cfg)
    message = str(error.value)
    assert f"- PoseAnything: {checkpoint} is damaged: it no longer matches the checksum in demo_b.pth.sha256" in message
    assert "--only poseanything" in message and "1 pretrained model(s) missing" in message
    assert not (tmp_path / "outputs").exists()


def test_all_missing_weights_are_named_at_once_before_any_run_directory(tmp_path, offline_hub):
    cfg = default_config(tmp_path)
    with pytest.raises(DynaPoseError) as error:
        run(cfg)
    message = str(error.value)
    own_copy = {
        "Zero123-XL": "static.model=/path/to/it, dynamic.model",
        "Stable Video Diffusion": "video.model",
        "PoseAnything": "keypoints.checkpoint",
    }
    for name, keys in own_copy.items():
        assert f"- {name}: " in message and f"your own copy: {keys}=/path/to/it" in message
    assert "ashawkey/zero123-xl-diffusers" in message and "hf auth login" in message and "drive.google.com" in message
    assert "scripts/download_weights.py --dir weights --only zero123,svd,poseanything" in message
    assert "weights_dir=weights" in message
    assert not (tmp_path / "outputs").exists()


def photo(tmp_path: Path) -> Path:
    Image.new("RGB", (60, 40), (200, 80, 40)).save(tmp_path / "photo.png")  # no alpha: rembg must cut it out
    return tmp_path / "photo.png"


def screenshot(tmp_path: Path) -> Path:
    Image.new("RGBA", (60, 40), (200, 80, 40, 255)).save(tmp_path / "shot.png")  # its alpha marks nothing
    return tmp_path / "shot.png"


@pytest.mark.parametrize(
    ("make_image", "problem"),
    [(photo, "has no alpha channel"), (screenshot, "has an alpha channel that is opaque everywhere")],
)
def test_an_offline_image_without_a_mask_names_rembg_s_model_in_the_one_message(
    tmp_path, monkeypatch, offline_hub, make_image, problem
):
    home = tmp_path / "rembg-home"
    model_dir = rembg_offline(monkeypatch, home)  # rembg itself would fail on its own, with its own message
    image = make_image(tmp_path)
    with pytest.raises(DynaPoseError) as error:
        run(compose_config([f"image={image}", f"output_dir={tmp_path / 'outputs'}"]))
    message = str(error.value)
    assert message.startswith("4 pretrained model(s) missing; nothing was run")
    for name in ("Zero123-XL", "Stable Video Diffusion", "PoseAnything", "rembg U²-Net"):
        assert f"\n  - {name}: " in message
    assert (
        f"- rembg U²-Net: u2net.onnx is in neither {model_dir} nor {home}, and offline; needed to cut the object "
        f"out, as {image} {problem}; or give mask=path/to/mask.png (white = object)\n"
    ) in message
    own_copy = "put u2net.onnx in <dir>/rembg/ and pass weights_dir=<dir>, or put it in the directory that the "
    assert f"your own copy: {own_copy}environment variable U2NET_HOME names\n" in message
    assert "download_weights.py --dir weights --only zero123,svd,poseanything,rembg\n" in message
    assert not (tmp_path / "outputs").exists()


def test_an_offline_rgb_clip_names_rembg_s_model_in_the_one_message(tmp_path, monkeypatch, offline_hub):
    from dynapose4d.media import write_video

    rembg_offline(monkeypatch, tmp_path / "rembg-home")
    clip = tmp_path / "clip.mp4"
    write_video(clip, torch.rand(2, 16, 16, 3))
    with pytest.raises(DynaPoseError) as error:
        run(compose_config([f"video={clip}", f"output_dir={tmp_path / 'outputs'}"]))
    message = str(error.value)  # Zero123 (the dynamic stage), PoseAnything and rembg; the clip replaces SVD
    assert message.startswith("3 pretrained model(s) missing") and "--only zero123,poseanything,rembg\n" in message
    assert f"needed to cut the object out, as the frames of {clip} have no alpha channel; or give" in message
    assert not (tmp_path / "outputs").exists()


def test_an_image_with_a_mask_file_or_rembg_s_model_in_weights_dir_needs_no_rembg_download(
    tmp_path, monkeypatch, offline_hub
):
    monkeypatch.setenv("U2NET_HOME", "")  # restored (unset or as it was) after the test: point_rembg_at sets it
    monkeypatch.delenv("U2NET_HOME")
    Image.new("L", (60, 40), 255).save(tmp_path / "mask.png")
    weights = tmp_path / "weights"
    (weights / "rembg").mkdir(parents=True)
    (weights / "rembg" / "u2net.onnx").write_bytes(b"")
    for extra in (f"mask={tmp_path / 'mask.png'}", f"weights_dir={weights}"):
        with pytest.raises(DynaPoseError) as error:
            run(compose_config([f"image={photo(tmp_path)}", f"output_dir={tmp_path / 'outputs'}", extra]))
        assert str(error.value).startswith("3 pretrained model(s) missing") and "rembg" not in str(error.value)


def test_video_mask_rembg_needs_rembg_s_model_before_svd_runs(tmp_path, monkeypatch, offline_hub):
    rembg_offline(monkeypatch, tmp_path / "rembg-home")
    for mask, missing in (("rembg", "2 pretrained model(s) missing"), ("auto", "1 pretrained model(s) missing")):
        with pytest.raises(DynaPoseError) as error:
            run(default_config(tmp_path, "stages=[video]", f"video.mask={mask}"))
        assert str(error.value).startswith(missing)
        assert ("video.mask=rembg masks SVD's frames" in str(error.value)) == (mask == "rembg")


def test_online_rembg_s_model_is_fetched_where_rembg_looks_for_it(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import requests
    from rembg.sessions.u2net import U2netSession

    from dynapose4d.weights import locate_rembg

    data = b"onnx" * 100
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(requests, "get", lambda url, headers, **kw: FakeReply(data, headers))
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "home"))
    path = locate_rembg("a test needs it")
    assert path.read_bytes() == data
    assert Path(U2netSession.download_models()) == path  # rembg takes that file: no download of its own


def test_models_missing_from_weights_dir_are_fetched_into_it(tmp_path, offline_hub):
    cfg = default_config(tmp_path, f"weights_dir={tmp_path / 'empty'}", "stages=[static,video]")
    with pytest.raises(DynaPoseError, match=f"--dir {tmp_path / 'empty'} --only zero123,svd\n"):
        run(cfg)


def test_a_wrong_path_is_named_but_not_offered_for_download(tmp_path, offline_hub):
    cfg = default_config(tmp_path, f"static.model={tmp_path / 'nope'}", "stages=[static,video]")
    with pytest.raises(DynaPoseError) as error:
        run(cfg)
    assert f"'{tmp_path / 'nope'}': no such directory" in str(error.value)
    assert "--only svd\n" in str(error.value)


def test_train_script_prints_the_one_message_without_a_traceback(tmp_path):
    image = write_rgba(tmp_path / "box.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), f"image={image}", f"output_dir={tmp_path / 'out'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert "3 pretrained model(s) missing" in result.stderr and "download_weights.py" in result.stderr
    assert not (tmp_path / "out").exists()


def test_rembg_reads_its_model_from_weights_dir_unless_u2net_home_is_set(tmp_path, monkeypatch):
    (tmp_path / "rembg").mkdir()
    (tmp_path / "rembg" / "u2net.onnx").write_bytes(b"")
    monkeypatch.setenv("U2NET_HOME", "")  # restored (unset or as it was) after the test
    monkeypatch.delenv("U2NET_HOME")
    point_rembg_at(str(tmp_path))
    assert os.environ["U2NET_HOME"] == str(tmp_path / "rembg")
    monkeypatch.setenv("U2NET_HOME", "/mine")
    point_rembg_at(str(tmp_path))
    assert os.environ["U2NET_HOME"] == "/mine"


def download_weights(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # a dry run must not need the network
    script = ROOT / "scripts" / "download_weights.py"
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, env=env)


def test_dry_run_names_every_model_and_the_offline_setting_without_downloading(tmp_path):
    from dynapose4d.weights import CATALOGUE

    result = download_weights("--dry-run", "--eval", "--dir", "w", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for weights in [CATALOGUE[key] for key in ("zero123", "svd", "poseanything", "rembg", "clip", "i3d_400", "lpips")]:
        assert f"{weights.model.name} [{weights.key}], {weights.size}" in result.stdout
        assert weights.model.licence in result.stdout and str(tmp_path / "w" / weights.path) in result.stdout
    assert "hf auth login" in result.stdout and f"weights_dir={tmp_path / 'w'} " in result.stdout
    assert not (tmp_path / "w").exists()


def test_an_unknown_model_in_only_is_one_clean_line(tmp_path):
    result = download_weights("--dry-run", "--only", "zero123,zero9000", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown model(s) in --only: zero9000" in result.stderr


class FakeReply:
    """requests' streamed reply to a GET with a Range header, from bytes in memory."""

    def __init__(self, data: bytes, headers: dict):
        start = int(headers["Range"].removeprefix("bytes=").rstrip("-")) if "Range" in headers else 0
        self.status_code = 206 if start else 200
        self.body = data[start:]
        self.headers = {"content-length": str(len(self.body))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def raise_for_status(self):
        pass

    def iter_content(self, chunk_size):
        return [self.body[i : i + chunk_size] for i in range(0, len(self.body), chunk_size)]


def test_a_file_download_resumes_from_its_part_file(tmp_path, monkeypatch):
    import requests

    from dynapose4d.downloads import fetch_file

    data = bytes(range(256)) * 100
    asked = []
    monkeypatch.setattr(requests, "get", lambda url, headers, **kw: asked.append(headers) or FakeReply(data, headers))
    target = tmp_path / "rembg" / "u2net.onnx"
    target.parent.mkdir()
    target.with_name("u2net.onnx.part").write_bytes(data[:1000])  # what an interrupted run left
    fetch_file("https://example.org/u2net.onnx", target, "rembg")
    assert asked == [{"Range": "bytes=1000-"}] and target.read_bytes() == data
    assert not target.with_name("u2net.onnx.part").exists()
    digest = hashlib.sha256(data).hexdigest()
    assert target.with_name("u2net.onnx.sha256").read_text() == f"{digest}  u2net.onnx\n"


def test_a_file_damaged_since_its_download_is_fetched_again(tmp_path, monkeypatch):
    import requests

    from dynapose4d.downloads import fetch_file, recorded_checksum_differs

    data = bytes(range(256)) * 100
    asked = []
    monkeypatch.setattr(requests, "get", lambda url, headers, **kw: asked.append(url) or FakeReply(data, headers))
    target = tmp_path / "u2net.onnx"
    fetch_file("https://example.org/u2net.onnx", target, "rembg")
    fetch_file("https://example.org/u2net.onnx", target, "rembg")  # intact: not asked for again
    assert len(asked) == 1 and not recorded_checksum_differs(target)
    target.write_bytes(data[:-1] + b"x")  # one byte flipped on disk
    assert recorded_checksum_differs(target)
    fetch_file("https://example.org/u2net.onnx", target, "rembg")
    assert len(asked) == 2 and target.read_bytes() == data and not recorded_checksum_differs(target)


def test_a_download_that_ends_short_never_counts_as_present(tmp_path, monkeypatch):
    import requests

    from dynapose4d.downloads import fetch_file

    data = bytes(range(256)) * 100

    class ShortReply(FakeReply):  # announces every byte, then the connection ends quietly halfway
        def iter_content(self, chunk_size):
            return [self.body[: len(self.body) // 2]]

    monkeypatch.setattr(requests, "get", lambda url, headers, **kw: ShortReply(data, headers))
    target = tmp_path / "u2net.onnx"
    with pytest.raises(DynaPoseError, match="stopped after 12800 of 25600 bytes; rerun to resume"):
        fetch_file("https://example.org/u2net.onnx", target, "rembg")
    assert not target.exists() and target.with_name("u2net.onnx.part").stat().st_size == 12800


def test_a_web_page_instead_of_a_checkpoint_is_refused(tmp_path):
    from dynapose4d.weights import CATALOGUE, refuse_web_page

    page = tmp_path / "model.pth"
    page.write_bytes(b"<!DOCTYPE html><html>Google Drive can't scan this file</html>")
    with pytest.raises(DynaPoseError, match="sent a web page.*download it by hand"):
        refuse_web_page(page, CATALOGUE["poseanything"].model)
    assert not page.exists()
