"""Bring your own ground truth: a sample written by hand (not by the synthetic subject's code) trains and scores.

The sample is a ball of Gaussians drifting to the right, rendered by the rasteriser at cameras
on a 2.5-unit orbit with a 40-degree field of view (not the default 2 / 49.1), one held-out
view given as OpenCV matrices; its files and sample.json are written here field by field.
"""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING, compose_config

from dynapose4d.cameras import intrinsics_from_fovy, look_at_viewmat, orbit_cameras, orbit_position
from dynapose4d.data.sample import SampleError, load_sample
from dynapose4d.eval.image_metrics import psnr
from dynapose4d.gaussians import GaussianModel
from dynapose4d.pipeline import run
from dynapose4d.render import rasterize
from dynapose4d.validation import SettingsError

SIZE, FRAMES, RADIUS, FOVY = 32, 2, 2.5, 40.0
EVAL_ORBIT = [(0.0, 60.0), (10.0, 200.0)]  # (elevation, azimuth)
MATRIX_VIEW = (-15.0, 300.0)  # the third held-out view, written as world_to_camera and K
TRAIN_ORBIT = [(e, a) for e in (-20.0, 0.0, 20.0) for a in range(0, 360, 45)]


def ball(frame: int) -> dict[str, torch.Tensor]:
    """200 coloured Gaussians on a sphere of radius 0.45 at x = 0.1 * frame."""
    generator = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(200, 3, generator=generator), dim=-1)
    return {
        "means": 0.45 * directions + torch.tensor([0.1 * frame, 0.0, 0.0]),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(200, 4),
        "scales": torch.full((200, 3), 0.08),
        "opacities": torch.full((200,), 0.9),
        "colors": 0.5 + 0.5 * directions,  # the colour says which side faces the camera
    }


def render_rgba(cameras, frame: int) -> np.ndarray:
    """Straight-alpha RGBA uint8 [C, H, W, 4] as a renderer of one's own would write them."""
    rgb, alpha, _ = rasterize(
        **ball(frame), viewmats=cameras.viewmats, Ks=cameras.Ks, width=SIZE, height=SIZE,
        backgrounds=torch.zeros(len(cameras), 3), backend="torch",
    )  # fmt: skip
    straight = torch.where(alpha > 0, rgb / alpha.clamp_min(1e-6), 0.0).clamp(0, 1)
    return (torch.cat([straight, alpha], -1) * 255).round().to(torch.uint8).numpy()


def matrix_camera():
    position = orbit_position(*MATRIX_VIEW, RADIUS)[None]
    return look_at_viewmat(position)[0], intrinsics_from_fovy(FOVY, SIZE, SIZE)


def write_hand_made_sample(directory, train_frames: int = 1, keypoints: bool = True) -> None:
    def orbit(views):
        elevations, azimuths = torch.tensor(views).T
        return orbit_cameras(elevations, azimuths, RADIUS, FOVY, SIZE, SIZE)

    viewmat, K = matrix_camera()
    heldout = orbit(EVAL_ORBIT)
    heldout.viewmats, heldout.Ks = torch.cat([heldout.viewmats, viewmat[None]]), torch.cat([heldout.Ks, K[None]])
    for t in range(FRAMES):
        reference = render_rgba(orbit([(0.0, 0.0)]), t)[0]
        (directory / "driving").mkdir(parents=True, exist_ok=True)
        iio.imwrite(directory / "driving" / f"{t:03d}.png", reference)
        if t == 0:
            iio.imwrite(directory / "image.png", reference)
        for folder, cameras, written in (("eval", heldout, FRAMES), ("train", orbit(TRAIN_ORBIT), train_frames)):
            if t < written:
                for v, image in enumerate(render_rgba(cameras, t)):
                    (directory / folder / f"{v:02d}").mkdir(parents=True, exist_ok=True)
                    iio.imwrite(directory / folder / f"{v:02d}" / f"{t:03d}.png", image)
    meta = {
        "format": "dynapose4d-sample/1",
        "name": "ball",
        "num_frames": FRAMES,
        "reference": {"elevation": 0.0, "radius": RADIUS, "fovy": FOVY},
        "eval_views": [{"elevation": e, "azimuth": a} for e, a in EVAL_ORBIT]
        + [{"world_to_camera": viewmat.tolist(), "K": K.tolist()}],
        "train_views": [{"elevation": e, "azimuth": a} for e, a in TRAIN_ORBIT],
        "train_frames": train_frames,
    }
    if keypoints:  # the ball's centre and its rightmost point, drifting right
        centre = SIZE / 2
        focal = 0.5 * SIZE / math.tan(math.radians(FOVY) / 2)
        meta["keypoints"] = {
            "names": ["centre", "right"],
            "bones": [[0, 1]],
            "frames": [[[centre + focal * 0.1 * t / RADIUS, centre], [centre + focal * (0.1 * t + 0.45) / RADIUS,
                                                                       centre]] for t in range(FRAMES)],
        }  # fmt: skip
    (directory / "sample.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ball")
    write_hand_made_sample(directory)
    return directory


def test_a_hand_made_sample_trains_end_to_end_and_is_scored_at_its_own_cameras(sample_dir, tmp_path):
    config = compose_config(["experiment=ground_truth", f"sample={sample_dir}", f"output_dir={tmp_path}",
                             *TINY_TRAINING])  # fmt: skip
    run_dir = run(config)
    assert (run_dir / "dynamic" / "DONE").exists()
    recorded = (run_dir / ".hydra" / "config.yaml").read_text()
    assert f"radius: {RADIUS}" in recorded and f"fovy: {FOVY}" in recorded and f"image_size: {SIZE}" in recorded
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"static", "dynamic"} and metrics["dynamic"]["frames"] == [0, 1]
    assert len(metrics["dynamic"]["per_frame"]["heldout_psnr"]) == FRAMES

    # Score the written 4D model again, independently, at the sample's cameras (radius 2.5, fovy 40)...
    viewmat, K = matrix_camera()
    at_radius = {}
    for radius in (RADIUS, 2.0):
        elevations, azimuths = torch.tensor(EVAL_ORBIT).T
        cameras = orbit_cameras(elevations, azimuths, radius, FOVY, SIZE, SIZE)
        viewmats = torch.cat([cameras.viewmats, viewmat[None] if radius == RADIUS else
                              look_at_viewmat(orbit_position(*MATRIX_VIEW, radius)[None])])  # fmt: skip
        Ks = torch.cat([cameras.Ks, K[None]])
        scores = []
        for t in range(FRAMES):
            gaussians = GaussianModel.load_ply(run_dir / "dynamic" / "frames" / f"{t:03d}.ply").activated()
            rendered, _, _ = rasterize(**gaussians, viewmats=viewmats, Ks=Ks, width=SIZE, height=SIZE,
                                       backgrounds=torch.ones(3, 3), backend="torch")  # fmt: skip
            for v in range(3):
                truth = torch.from_numpy(iio.imread(sample_dir / "eval" / f"{v:02d}" / f"{t:03d}.png")).float() / 255
                target = truth[..., :3] * truth[..., 3:] + 1 - truth[..., 3:]
                scores.append(psnr((rendered[v] * 255).round() / 255, (target * 255).round() / 255))
        at_radius[radius] = [sum(scores[t * 3 : t * 3 + 3]) / 3 for t in range(FRAMES)]
    # ...which the run's numbers match, and the default radius would not.
    assert at_radius[RADIUS] == pytest.approx(metrics["dynamic"]["per_frame"]["heldout_psnr"], abs=0.05)
    assert at_radius[2.0] != pytest.approx(metrics["dynamic"]["per_frame"]["heldout_psnr"], abs=0.05)


def test_training_uses_the_samples_reference_camera_over_the_config(sample_dir, tmp_path):
    config = compose_config(["experiment=ground_truth", f"sample={sample_dir}", f"output_dir={tmp_path}",
                             "static.camera.radius=3.0", "stages=[static]", *TINY_TRAINING])  # fmt: skip
    run_dir = run(config)
    assert config.static.camera.radius == RADIUS  # the input image was taken from the sample's camera
    assert load_sample(run_dir / "input" / "ground_truth").reference.radius == RADIUS


def test_what_the_oracle_settings_need_is_checked_before_any_run_directory(tmp_path):
    directory = tmp_path / "no-keypoints"
    write_hand_made_sample(directory, keypoints=False)
    for extra, message in (([], "keypoints=oracle needs keypoints"), (["dynamic.prior=oracle"], "every frame")):
        config = compose_config(["experiment=ground_truth", f"sample={directory}", f"output_dir={tmp_path / 'out'}",
                                 *TINY_TRAINING, *extra])  # fmt: skip
        with pytest.raises(SettingsError, match=message):
            run(config)
        assert not (tmp_path / "out").exists()


def test_the_dynamic_oracle_trains_on_training_views_at_every_frame(tmp_path):
    directory = tmp_path / "every-frame"
    write_hand_made_sample(directory, train_frames=FRAMES)
    config = compose_config(["experiment=ground_truth", f"sample={directory}", f"output_dir={tmp_path / 'out'}",
                             "dynamic.prior=oracle", "dynamic.views_per_frame=2", *TINY_TRAINING])  # fmt: skip
    run_dir = run(config)
    losses = (run_dir / "tb" / "dynamic" / "losses.csv").read_text().splitlines()
    assert all(0 < float(value) < 1 for value in _column(losses, "loss/prior"))  # the oracle MSE at every step


def _column(lines: list[str], name: str) -> list[str]:
    index = lines[0].split(",").index(name)
    return [line.split(",")[index] for line in lines[1:]]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "sample.json").unlink(), "no sample.json"),
        (lambda d: _edit(d, format="other/2"), "format must be"),
        (lambda d: (d / "eval" / "01" / "001.png").unlink(), "001.png is missing"),
        (lambda d: iio.imwrite(d / "image.png", np.zeros((SIZE, SIZE, 3), np.uint8)), "no alpha channel"),
        (lambda d: iio.imwrite(d / "train" / "03" / "000.png", np.zeros((16, 16, 4), np.uint8)), "of train/ must have"),
        (lambda d: _edit(d, train_frames=5), "train_frames must be 1 or num_frames"),
        (lambda d: _edit(d, eval_views=[{"azimuth": 30.0}] * 3), "needs elevation and azimuth"),
        (lambda d: _edit(d, reference={"radius": -1.0}), "radius > 0"),
        (lambda d: _edit(d, keypoints={"names": ["a"], "bones": [], "frames": [[[1.0, 2.0]]]}), "keypoints.frames"),
    ],
)
def test_a_sample_that_breaks_the_format_is_named_with_the_problem(sample_dir, tmp_path, damage, message):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sample_dir, broken)
    damage(broken)
    with pytest.raises(SampleError, match=message):
        load_sample(broken)


def _edit(directory, **changes) -> None:
    path = directory / "sample.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
