"""A resume whose config names other inputs than input/ was made from redoes input/ and moves every stage aside."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image

from dynapose4d.checkpoint import DONE
from dynapose4d.data.inputs import input_changes, input_fingerprint
from dynapose4d.data.synthetic import write_synthetic_sample
from dynapose4d.errors import DynaPoseError
from dynapose4d.media import load_png
from dynapose4d.pipeline import run

ORANGE, BLUE = (200, 80, 40), (40, 80, 200)
CHANGED = "the inputs changed since input/ was written"
# The static stage on a real RGBA image, offline (no prior, no rembg) and in a second or two.
TINY_REAL = [
    "image_size=32", "static.prior=none", "static.iterations=2", "static.batch_size=2", "static.num_points=200",
    "static.render_size=32", "static.orbit_views=2", "static.checkpoint_every=1", "static.novel_view_sizes=[[0,32]]",
    "log.tensorboard=false", "log.images_every=0",
]  # fmt: skip


def write_box(path: Path, color: tuple[int, int, int]) -> Path:
    pixels = np.zeros((40, 60, 4), dtype=np.uint8)
    pixels[10:30, 20:40] = (*color, 255)  # a box on a transparent canvas: its alpha is the mask
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def image_config(tmp_path: Path, image: Path, *extra: str):
    return compose_config([f"image={image}", f"run_dir={tmp_path / 'run'}", *TINY_REAL, *extra])


def reference_color(run_dir: Path) -> list[float]:
    """The mean colour (0..255) of the object in input/reference.png."""
    reference = load_png(run_dir / "input" / "reference.png")  # [H, W, 4]
    return (reference[reference[..., 3] > 0.5][:, :3].mean(dim=0) * 255).tolist()


def input_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith(CHANGED)]


def test_a_resume_with_another_image_redoes_the_inputs_and_moves_every_stage_aside(tmp_path, caplog):
    cat, dog = write_box(tmp_path / "cat.png", ORANGE), write_box(tmp_path / "dog.png", BLUE)
    run_dir = run(image_config(tmp_path, cat, "stages=[static]"))
    with caplog.at_level(logging.WARNING, logger="dynapose4d"):
        run(image_config(tmp_path, dog, "stages=[static]", "resume=true"))

    assert reference_color(run_dir) == pytest.approx(BLUE, abs=2)
    (kept,) = (run_dir / "superseded").iterdir()
    assert reference_color(kept) == pytest.approx(ORANGE, abs=2)
    assert (kept / "input" / DONE).exists() and (kept / "static" / DONE).exists()  # kept whole, not deleted
    assert (run_dir / "static" / DONE).exists()  # trained again, on the new image
    assert input_warnings(caplog) == [
        f"{CHANGED} (image: {cat} -> {dog}): redoing input, static; "
        f"the old input/ and the outputs of static made from it are now in {kept}"
    ]
    recorded = json.loads((run_dir / "input" / DONE).read_text())["inputs"]
    assert recorded["image"]["path"] == str(dog) and recorded["image_size"] == 32


def test_an_image_rewritten_in_place_counts_as_changed(tmp_path, caplog):
    image = write_box(tmp_path / "cat.png", ORANGE)
    run_dir = run(image_config(tmp_path, image, "stages=[]"))
    size = image.stat().st_size
    write_box(image, BLUE)  # the same path, other bytes
    assert image.stat().st_size == size  # only the hash tells them apart
    with caplog.at_level(logging.WARNING, logger="dynapose4d"):
        run(image_config(tmp_path, image, "stages=[]", "resume=true"))
    assert reference_color(run_dir) == pytest.approx(BLUE, abs=2)
    assert len(list((run_dir / "superseded").glob(f"*/input/{DONE}"))) == 1
    assert input_warnings(caplog)[0].startswith(f"{CHANGED} (image: {image} changed): redoing input")


def test_a_bad_new_input_fails_before_anything_moves(tmp_path):
    run_dir = run(image_config(tmp_path, write_box(tmp_path / "cat.png", ORANGE), "stages=[]"))
    with pytest.raises(DynaPoseError, match="input image not found"):
        run(image_config(tmp_path, tmp_path / "missing.png", "stages=[]", "resume=true"))
    assert (run_dir / "input" / DONE).exists() and not (run_dir / "superseded").exists()


def test_an_unchanged_resume_redoes_nothing(tmp_path):
    image = write_box(tmp_path / "cat.png", ORANGE)
    run_dir = run(image_config(tmp_path, image, "stages=[static]"))
    stamps = [(run_dir / stage / DONE).stat().st_mtime_ns for stage in ("input", "static")]
    run(image_config(tmp_path, image, "stages=[static]", "resume=true"))
    assert [(run_dir / stage / DONE).stat().st_mtime_ns for stage in ("input", "static")] == stamps
    assert not (run_dir / "superseded").exists()


def test_an_input_done_without_a_fingerprint_is_trusted(tmp_path):
    cat, dog = write_box(tmp_path / "cat.png", ORANGE), write_box(tmp_path / "dog.png", BLUE)
    run_dir = run(image_config(tmp_path, cat, "stages=[]"))
    done = run_dir / "input" / DONE
    done.write_text(json.dumps({"files": json.loads(done.read_text())["files"]}))  # as older versions wrote it
    run(image_config(tmp_path, dog, "stages=[]", "resume=true"))
    assert reference_color(run_dir) == pytest.approx(ORANGE, abs=2)
    assert not (run_dir / "superseded").exists()


def test_a_changed_file_inside_the_sample_redoes_the_inputs(tmp_path, caplog):
    sample = write_synthetic_sample(tmp_path / "sample", "quadruped", 0, num_frames=2, num_gaussians=300, resolution=32)
    config = ["experiment=ground_truth", f"sample={sample}", f"run_dir={tmp_path / 'run'}", "stages=[]"]
    run_dir = run(compose_config(config))
    view = sample / "eval" / "00" / "000.png"
    pixels = np.array(Image.open(view))
    pixels[0, 0] = (255, 0, 0, 255)  # one held-out pixel painted over
    Image.fromarray(pixels).save(view)
    with caplog.at_level(logging.WARNING, logger="dynapose4d"):
        run(compose_config([*config, "resume=true"]))
    written = load_png(run_dir / "input" / "ground_truth" / "eval" / "00" / "000.png")
    torch.testing.assert_close(written[0, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]))
    assert len(list((run_dir / "superseded").glob("*/input/ground_truth/sample.json"))) == 1
    assert input_warnings(caplog)[0].startswith(f"{CHANGED} (sample: {sample} changed): redoing input")


def test_a_renamed_or_deleted_copy_is_the_same_input_and_a_setting_is_named_by_its_key(tmp_path):
    image = write_box(tmp_path / "cat.png", ORANGE)
    recorded = input_fingerprint(image_config(tmp_path, image))
    renamed = image.rename(tmp_path / "kitten.png")
    assert input_changes(recorded, input_fingerprint(image_config(tmp_path, renamed))) == []
    renamed.unlink()  # gone since input/ was written: the run has its copy
    assert input_changes(recorded, input_fingerprint(image_config(tmp_path, image))) == []
    smaller = input_fingerprint(image_config(tmp_path, image, "image_size=24", "border_ratio=null"))
    assert input_changes(recorded, smaller) == ["image_size 32 -> 24", "border_ratio 0.2 -> None"]
