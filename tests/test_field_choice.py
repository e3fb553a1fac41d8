"""dynamic/deformation=auto: the field by what the keypoints stage found, and each field's own SCL weight."""

import json
import logging

import pytest
import torch
from conftest import TINY_SYNTHETIC, compose_config
from omegaconf import OmegaConf

from dynapose4d.data.sample import load_sample, save_sample
from dynapose4d.data.support import SupportKeypoints, automatic_support
from dynapose4d.data.synthetic import build_sample, make_subject
from dynapose4d.deform.hexplane import HexPlaneDeformation
from dynapose4d.deform.skeleton import SkeletonDeformation
from dynapose4d.errors import DynaPoseError
from dynapose4d.pipeline import run
from dynapose4d.run import Run
from dynapose4d.stages.phi import chosen_settings, trained_motion


def three_points(joints: bool) -> SupportKeypoints:
    points = torch.tensor([[10.5, 10.5], [20.5, 12.5], [30.5, 30.5]])
    return SupportKeypoints(points, [(0, 1), (1, 2)], ["a", "b", "c"], (48, 48), joints)


def field_config(name: str) -> dict:
    """configs/dynamic/deformation/<name>.yaml."""
    return OmegaConf.to_container(compose_config([f"dynamic/deformation={name}"]).dynamic.deformation)


def test_joints_get_the_skeleton_at_its_own_scl_weight(caplog):
    with caplog.at_level(logging.INFO, logger="dynapose4d.stages.phi"):
        chosen = chosen_settings(compose_config([]).dynamic, three_points(joints=True))
    assert OmegaConf.to_container(chosen.deformation) == field_config("skeleton")
    assert chosen.loss.scl == 1000.0  # skeleton.yaml's scl_weight
    assert "deformation=auto chose skeleton: the support keypoints are joints" in caplog.text


def test_points_spread_over_the_mask_get_the_hexplane(caplog):
    mask = torch.zeros(48, 48)
    mask[10:40, 12:36] = 1
    with caplog.at_level(logging.INFO, logger="dynapose4d.stages.phi"):
        chosen = chosen_settings(compose_config([]).dynamic, automatic_support(mask, 6))
    assert OmegaConf.to_container(chosen.deformation) == field_config("hexplane")
    assert chosen.loss.scl == 10000.0
    assert "deformation=auto chose hexplane" in caplog.text and '"joints": true gets the skeleton' in caplog.text


def test_too_few_joints_for_a_skeleton_get_the_hexplane(caplog):
    two = SupportKeypoints(torch.tensor([[10.5, 10.5], [20.5, 12.5]]), [(0, 1)], ["a", "b"], (48, 48), joints=True)
    with caplog.at_level(logging.INFO, logger="dynapose4d.stages.phi"):
        chosen = chosen_settings(compose_config([]).dynamic, two)
    assert chosen.deformation.name == "hexplane" and "2 support keypoints are too few for a skeleton" in caplog.text


def test_an_scl_weight_on_the_command_line_wins_over_the_fields():
    settings = compose_config(["dynamic.loss.scl=5"]).dynamic
    assert chosen_settings(settings, three_points(joints=True)).loss.scl == 5
    assert chosen_settings(settings, three_points(joints=False)).loss.scl == 5


def test_a_field_chosen_by_name_is_kept_whatever_the_support():
    settings = compose_config(["dynamic/deformation=sparse_control"]).dynamic
    chosen = chosen_settings(settings, three_points(joints=True))
    assert chosen.deformation.name == "sparse_control" and chosen.loss.scl == 10000.0
    hexplane = compose_config(["dynamic/deformation=hexplane"]).dynamic
    assert chosen_settings(hexplane, None).deformation.name == "hexplane"  # it needs no keypoints


def test_a_branch_setting_reaches_the_chosen_field():
    settings = compose_config(["dynamic.deformation.when_joints.stretch=true"]).dynamic
    assert chosen_settings(settings, three_points(joints=True)).deformation.stretch is True


def test_auto_without_support_keypoints_says_what_to_do():
    with pytest.raises(
        DynaPoseError, match="run the keypoints stage, or choose one, e.g. dynamic/deformation=hexplane"
    ):
        chosen_settings(compose_config([]).dynamic, None)


@pytest.mark.parametrize(("kind", "joints"), [("quadruped", True), ("blob", False)])
def test_a_samples_keypoints_say_whether_they_are_joints(kind, joints, tmp_path):
    sample = build_sample(make_subject(kind, 2, 0, 400), resolution=32, eval_azimuths=(90.0,))
    save_sample(sample, tmp_path / "sample")
    assert sample.keypoints.joints is joints
    assert load_sample(tmp_path / "sample").keypoints.joints is joints


def test_the_blob_trains_the_hexplane_end_to_end_and_its_export_rebuilds_it(tmp_path, caplog):
    """A blob's keypoints are not joints: the oracle says so in support.json, the dynamic stage trains the
    hexplane at its SCL weight, and the export's phi (trained_motion) makes the same choice from the run."""
    cfg = compose_config([*TINY_SYNTHETIC, "synthetic.kind=blob", f"output_dir={tmp_path / 'out'}"])
    with caplog.at_level(logging.INFO, logger="dynapose4d.stages.phi"):
        run_dir = run(cfg)
    assert json.loads((run_dir / "keypoints" / "support.json").read_text())["joints"] is False
    assert "deformation=auto chose hexplane" in caplog.text and "SCL weight 10000, hexplane's own" in caplog.text
    _, deformation, frames = trained_motion(Run(cfg, run_dir, torch.device("cpu")))
    assert isinstance(deformation.field, HexPlaneDeformation) and frames == cfg.synthetic.num_frames


def test_a_quadrupeds_joints_pose_the_skeleton_end_to_end(tmp_path):
    cfg = compose_config([*TINY_SYNTHETIC, f"output_dir={tmp_path / 'out'}"])
    run_dir = run(cfg)
    assert json.loads((run_dir / "keypoints" / "support.json").read_text())["joints"] is True
    _, deformation, _ = trained_motion(Run(cfg, run_dir, torch.device("cpu")))
    assert isinstance(deformation.field, SkeletonDeformation)
