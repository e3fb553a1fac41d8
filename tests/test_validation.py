"""The pre-flight settings check: shipped configs pass, each kind of mistake is named with its key, all at once."""

from pathlib import Path

import pytest
from conftest import CONFIG_DIR, TINY_SYNTHETIC, compose_config
from omegaconf import open_dict

from dynapose4d import config_schema
from dynapose4d.errors import DynaPoseError
from dynapose4d.rules import (
    AnyOf,
    Boolean,
    Choice,
    Integer,
    ListOf,
    Nullable,
    Number,
    Pair,
    Pattern,
    SizeSchedule,
    Text,
)
from dynapose4d.validation import SettingsError, validate_settings

SUFFIX = "nothing was run and no run directory was made"


def problems(overrides: list[str]) -> list[str]:
    """The problem lines validate_settings reports for these overrides (it must report some)."""
    with pytest.raises(SettingsError) as caught:
        validate_settings(compose_config(overrides))
    message = str(caught.value)
    if "\n" not in message:  # one problem: one line
        assert message.startswith("invalid setting ") and message.endswith(f"; {SUFFIX}")
        return [message.removeprefix("invalid setting ").removesuffix(f"; {SUFFIX}")]
    header, *lines = message.splitlines()
    assert header == f"{len(lines)} invalid settings; {SUFFIX}:" and len(lines) > 1
    assert all(line.startswith("  ") and not line.startswith("   ") for line in lines)
    return [line.strip() for line in lines]


def option_files(group: str) -> list[str]:
    return sorted(path.stem for path in (Path(CONFIG_DIR) / group).glob("*.yaml"))


# ----- every shipped combination is valid -----------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=synthetic"],
        TINY_SYNTHETIC,
        ["video=file", "video.path=x.mp4"],
        ["video=clip.mp4"],  # the shortcut
        ["keypoints=track"],
        ["keypoints=oracle", "experiment=synthetic"],
        ["dynamic/deformation=sparse_control"],
        ["dynamic/deformation=sparse_control", "experiment=synthetic"],
        ["render=torch"],
        ["render=gsplat"],
        ["static.prior=stable_zero123"],
        ["static.prior=none"],
        ["sweep=pal_weights"],
        ["experiment=synthetic", "synthetic.kind=blob"],
        ["sweep=deformation"],
        ["dynamic.loss.kml=0", "dynamic.loss.scl=1e4"],  # a job of sweep=pal_weights
        ["device=cuda:1", "static.iterations=10000", "border_ratio=null", "stages=[static]"],
    ],
    ids=lambda overrides: " ".join(overrides[:3]) or "default",
)
def test_shipped_combinations_are_valid(overrides):
    validate_settings(compose_config(overrides))


@pytest.mark.parametrize(
    "group, option",
    [(group, option) for group in ("deformation", "video", "keypoints", "render") for option in option_files(group)],
)
def test_every_option_file_is_valid(group, option):
    validate_settings(compose_config([f"{group}={option}", *(["experiment=synthetic"] if option == "oracle" else [])]))


def test_a_hydra_key_is_left_to_hydra():
    cfg = compose_config([])
    with open_dict(cfg):
        cfg.hydra = {"run": {"dir": "."}}
    validate_settings(cfg)


# ----- each mistake is named with its key and why ---------------------------------------------


MISTAKES = [  # overrides, the start of the line that must name the problem
    (["static.iterations=abc"], "static.iterations='abc': must be an integer >= 1"),
    (["static.iterations=1e4"], "static.iterations=10000.0: must be an integer >= 1 (write 10000, not 10000.0)"),
    (["image_size=-5"], "image_size=-5: must be an integer >= 16"),
    (["dynamic.kml_mode=bogus"], "dynamic.kml_mode='bogus': must be one of lift, render"),
    (["dynamic.prior=zeroo123"], "dynamic.prior='zeroo123': must be one of none, oracle, stable_zero123, zero123"),
    (["+dynamic.deformation.foo=1"], "dynamic.deformation.foo: unknown key for dynamic/deformation=auto (takes: "),
    (
        ["dynamic/deformation=hexplane", "+dynamic.deformation.foo=1"],
        "dynamic.deformation.foo: unknown key for dynamic/deformation=hexplane (takes: ",
    ),
    (
        ["dynamic/deformation=sparse_control", "+dynamic.deformation.resolution=[1,2]"],
        "dynamic.deformation.resolution: unknown key for dynamic/deformation=sparse_control, it belongs to "
        "dynamic/deformation=hexplane",
    ),
    (
        ["dynamic/deformation=hexplane", "dynamic.deformation.resolution=[32,32,32]"],
        "dynamic.deformation.resolution=[32, 32, 32]: must be a list of 4 items",
    ),
    (  # deformation=auto's branches are checked as the fields they hold
        ["dynamic.deformation.otherwise.resolution=[32,32,32]"],
        "dynamic.deformation.otherwise.resolution=[32, 32, 32]: must be a list of 4 items",
    ),
    (["dynamic.deformation.when_joints.scl_weight=-1"], "dynamic.deformation.when_joints.scl_weight=-1: must be"),
    (["dynamic.loss.scl=-1"], "dynamic.loss.scl=-1: must be"),
    (["static.novel_view_sizes=[[0.5,128]]"], "static.novel_view_sizes=[[0.5, 128]]: must start at ratio 0"),
    (["dynamic.novel_view_sizes=[[0,128],[0.5,4]]"], "dynamic.novel_view_sizes=[[0, 128], [0.5, 4]]: size 4 "),
    (["static.sds.max_timestep=[0.98]"], "static.sds.max_timestep=[0.98]: must be a pair [a, b], each a number"),
    (["keypoints=track", "keypoints.window=4"], "keypoints.window=4: must be an odd integer >= 3"),
    (["static.ref_warmup=maybe"], "static.ref_warmup='maybe': must be one of true, false, auto"),
    (["video.candidates=0"], "video.candidates=0: must be an integer >= 1"),
    (["video.mask=keyed"], "video.mask='keyed': must be one of auto, rembg, background"),
    (["background=grey"], "background='grey': must be one of white, black"),
    (["stages=[static,statc]"], "stages=['static', 'statc']: item 'statc' must be one of static, video, keypoints"),
    (["stages=[static,static]"], "stages=['static', 'static']: lists 'static' more than once"),
    (["dynamic.loss.kml=true"], "dynamic.loss.kml=True: must be a number >= 0"),
    (["static.sds.half_precision=yes"], "static.sds.half_precision='yes': must be true or false"),
    (["border_ratio=1"], "border_ratio=1: must be null or a number in [0, 1)"),
    (["device=gpu"], "device='gpu': must be auto, cpu, cuda or cuda:N"),
    (["elevation=${nope}"], "elevation=${nope}: cannot be resolved (Interpolation key 'nope' not found)"),
    (["~static.lr.sh0"], "static.lr.sh0: missing, must be a number >= 0"),
    (["+foo=1"], "foo: unknown key (takes: background, "),
    (["static.camera.azimuth_range=[180,-180]"], "static.camera.azimuth_range=[180, -180]: must be a pair [low, "),
    (["keypoints=oracle"], "keypoints.source='oracle': needs ground truth: experiment=ground_truth sample=DIR"),
    (["experiment=synthetic", "sample=some/dir"], "sample and experiment=synthetic both give the ground truth"),
    (["experiment=ground_truth", "sample=d", "image=a.png"], "image and sample both give the input image"),
    (["experiment=synthetic", "synthetic.kind=snake"], "synthetic.kind='snake': must be one of quadruped, biped"),
    (["experiment=synthetic", "+synthetic.motion=walk"], "synthetic.motion: unknown key (takes: kind, "),
]


@pytest.mark.parametrize("overrides, expected", MISTAKES, ids=[" ".join(overrides) for overrides, _ in MISTAKES])
def test_a_mistake_is_named_with_its_key_and_reason(overrides, expected):
    assert any(line.startswith(expected) for line in problems(overrides)), expected


def test_a_value_from_an_interpolation_says_where_it_came_from():
    prior = "dynamic.prior='zeroo123' (from ${static.prior}): must be one of none, oracle, stable_zero123, zero123"
    assert prior in problems(["static.prior=zeroo123"])
    stop = "static.densify.stop='abc' (from ${..iterations}): must be an integer >= 0"
    assert stop in problems(["static.iterations=abc"])
    sds = (
        "dynamic.sds.max_timestep=[0.5]: must be a pair [a, b], each a number in (0, 1] (via dynamic.sds=${static.sds})"
    )
    assert sds in problems(["static.sds.max_timestep=[0.5]"])


def test_a_broken_interpolation_is_reported_where_it_is_used_too():
    lines = problems(["elevation=${nope}"])
    assert [line.split(":")[0] for line in lines] == ["elevation=${nope}", "static.camera.elevation=${elevation}"]


def test_every_problem_is_reported_at_once():
    lines = problems(
        [
            "static.iterations=abc",
            "image_size=-5",
            "dynamic.kml_mode=bogus",
            "dynamic.prior=zeroo123",
            "+dynamic.deformation.foo=1",
        ]
    )
    keys = [line.split("=")[0].split(":")[0] for line in lines]
    assert keys == [
        "image_size",
        "static.iterations",
        "static.densify.stop",  # ${..iterations}
        "dynamic.kml_mode",
        "dynamic.prior",
        "dynamic.deformation.foo",
    ]


def test_the_error_is_a_dynapose_error_with_a_counted_header():
    with pytest.raises(DynaPoseError, match=r"^2 invalid settings; nothing was run and no run directory was made:\n"):
        validate_settings(compose_config(["background=grey", "video.candidates=0"]))


def test_the_group_option_decides_its_keys():
    """The selector is checked first; with an unknown option the group's other keys are not judged."""
    assert problems(["dynamic.deformation.name=mesh"]) == [
        "dynamic.deformation.name='mesh': must be one of auto, hexplane, skeleton, sparse_control"
    ]


# ----- the schema follows the code and configs/ -----------------------------------------------


def test_the_schema_options_are_the_codes_and_the_config_files():
    from dynapose4d.stages import STAGES, stage_order

    schema = config_schema.train_schema()
    assert set(schema["video"].schemas) == set(option_files("video"))
    assert set(schema["keypoints"].schemas) == set(option_files("keypoints"))
    assert set(schema["dynamic"]["deformation"].schemas) == set(option_files("dynamic/deformation"))
    assert set(schema["render"]["backend"].choices) == set(option_files("render"))
    # every stage runs after the stages it reads, and each has its config group; train.yaml runs them all
    assert [stage.name for stage in stage_order()] == ["static", "video", "keypoints", "dynamic"]
    assert set(STAGES.names()) == set(compose_config([]).stages) == set(schema["stages"].item.choices)


# ----- the rules, value by value ------------------------------------------------------------------

RULE_TABLE = [
    # rule, accepted, rejected
    (Integer(min=1), [1, 10000], [0, -1, True, 1.5, 1e4, "3", None]),
    (Integer(min=3, odd=True), [3, 21], [1, 4, 21.0, False]),
    (Number(0, 1), [0, 1, 0.5, 1.0], [True, False, -0.1, 1.01, "0.5", None]),
    (Number(above=0, below=180), [0.001, 49.1, 179], [0, 180, 0.0, True]),
    (Boolean(), [True, False], ["yes", "true", 1, 0, None]),
    (Choice("zero123", "stable_zero123", "oracle", "none"), ["zero123", "none"], ["Zero123", "", 1, None, True]),
    (Choice(True, False, "auto"), [True, False, "auto"], [1, 0, "true", "maybe", None]),
    (Nullable(Integer(min=1)), [None, 3], [0, "null", 2.0]),
    (Text("a path"), ["x.mp4", "weights/"], ["", 3, None, True]),
    (Pattern(r"auto|cpu|cuda(:\d+)?", "a device"), ["auto", "cpu", "cuda", "cuda:1"], ["gpu", "cuda:", "cuda:x", 0]),
    (AnyOf(Text(), Integer()), ["run", 2024], [1.5, True, "", None]),
    (Pair(Number(), ordered=True), [[0, 1], [-30, 30], [1, 1], [-0.5, 2]], [[1, 0], [1], [1, 2, 3], "0,1", [True, 2]]),
    (Pair(Number(above=0, max=1)), [[0.98, 0.02], [1, 1]], [[0, 0.5], [0.5, 1.5], [0.98]]),
    (ListOf(Integer(min=2), length=4), [[32, 32, 32, 12]], [[1, 2], [32, 32, 32, 1], [32, 32, 32, True], 32]),
    (ListOf(Integer(min=1), nonempty=True), [[1], [1, 2, 4, 8]], [[], [0], "1"]),
    (
        ListOf(Choice("static", "video"), distinct=True),
        [[], ["static"], ["video", "static"]],
        [["static"] * 2, "static"],
    ),
    (
        SizeSchedule(),
        [[[0, 128]], [[0.0, 128], [0.3, 256], [0.6, 512]], [[0, 32], [1, 48]]],
        [
            [[0.5, 128]],
            [[0, 128], [0, 256]],
            [[0, 128], [0.6, 256], [0.3, 512]],
            [[0, 4]],
            [[0, 128.0]],
            [[0, 128], [1.5, 256]],
            [],
            [0, 128],
            [[0, 128, 1]],
            "x",
            [[True, 128]],
        ],
    ),  # fmt: skip
]


@pytest.mark.parametrize("rule, accepted, rejected", RULE_TABLE, ids=lambda x: getattr(x, "describe", None))
def test_each_rule_accepts_and_rejects_exactly(rule, accepted, rejected):
    assert [value for value in accepted if rule.reason(value) is not None] == []
    assert [value for value in rejected if rule.reason(value) is None] == []


@pytest.mark.parametrize(
    "rule, value, reason",
    [
        (Number(above=0, below=180), 180, "must be a number in (0, 180)"),
        (Number(min=0, below=1), 1, "must be a number in [0, 1)"),
        (Number(above=0), 0, "must be a number > 0"),
        (Integer(max=5), 6, "must be an integer <= 5"),
        (Integer(min=1), 2.0, "must be an integer >= 1 (write 2, not 2.0)"),
        (Integer(min=1), 0.0, "must be an integer >= 1"),
        (Nullable(Number(min=0)), -1, "must be null or a number >= 0"),
        (ListOf(Integer(min=2), length=4), [2, 2], "must be a list of 4 items, each an integer >= 2"),
        (ListOf(Choice("a", "b")), ["a", "c"], "item 'c' must be one of a, b"),
        (Pair(Number(), ordered=True), [2, 1], "must be a pair [low, high] with low <= high, each a number"),
        (SizeSchedule(), [[0, 128], [0.6, 256], [0.3, 512]], "ratios must increase, got [0, 0.6, 0.3]"),
        (SizeSchedule(), [[0, 4]], "size 4 must be an integer >= 8"),
        (SizeSchedule(), [[0, 128], [2, 256]], "ratio 2 must be a number in [0, 1]"),
    ],
)
def test_each_rule_says_why(rule, value, reason):
    assert rule.reason(value) == reason
