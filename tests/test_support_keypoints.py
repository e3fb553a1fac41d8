"""Support keypoints: the JSON file format and its errors, automatic placement, the editable template."""

import json
import math

import pytest
import torch

from dynapose4d.data.support import (
    SupportKeypoints,
    automatic_support,
    load_support,
    minimum_spanning_tree,
    save_support,
    write_support_template,
)
from dynapose4d.errors import DynaPoseError
from dynapose4d.media import load_png


def table_mask(height: int = 60, width: int = 80) -> torch.Tensor:
    """A table seen from the side: a thick top and two legs, so the shape is not convex. [H, W]"""
    mask = torch.zeros(height, width)
    mask[10:22, 8:72] = 1.0
    mask[22:55, 10:20] = 1.0
    mask[22:55, 60:70] = 1.0
    return mask


def write_json(path, data) -> None:
    path.write_text(json.dumps(data))


def tree_length(points: torch.Tensor, edges: list[tuple[int, int]]) -> float:
    return sum(float((points[i] - points[j]).norm()) for i, j in edges)


def connects_all(count: int, edges: list[tuple[int, int]]) -> bool:
    """Union-find over the edges: is there a single component?"""
    root = list(range(count))

    def find(i: int) -> int:
        while root[i] != i:
            i = root[i]
        return i

    for i, j in edges:
        root[find(i)] = find(j)
    return len({find(i) for i in range(count)}) == 1


def kruskal_length(points: torch.Tensor) -> float:
    """Total length of the minimum spanning tree, by Kruskal's algorithm (independent of the module's Prim)."""
    count = len(points)
    pairs = sorted((float((points[i] - points[j]).norm()), i, j) for i in range(count) for j in range(i + 1, count))
    component = list(range(count))
    total = 0.0
    for length, i, j in pairs:
        if component[i] != component[j]:
            old = component[j]
            component = [component[i] if c == old else c for c in component]
            total += length
    return total


def test_save_load_round_trip_is_exact(tmp_path):
    support = SupportKeypoints(
        points=torch.tensor([[1.25, 2.5], [10.1, 3.3], [29.9, 19.7]]),
        skeleton=[(0, 1), (2, 1)],
        names=["nose", "tail", "paw"],
        image_size=(20, 30),
        joints=False,
    )
    save_support(tmp_path / "support.json", support)
    loaded = load_support(tmp_path / "support.json", (20, 30), expected_count=3)
    assert loaded.joints is False
    assert torch.equal(loaded.points, support.points)
    assert loaded.points.dtype == torch.float32
    assert loaded.skeleton == support.skeleton
    assert loaded.names == support.names
    assert loaded.image_size == support.image_size


def test_optional_fields_default_to_numbered_names_and_the_spanning_tree(tmp_path):
    points = [[1.0, 1.0], [9.0, 1.0], [2.0, 2.0], [9.0, 9.0]]
    write_json(tmp_path / "s.json", {"image_size": [10, 10], "keypoints": points})
    loaded = load_support(tmp_path / "s.json", (10, 10))
    assert loaded.names == ["kp0", "kp1", "kp2", "kp3"]
    assert loaded.joints is True  # a file of the user's own: its points are taken as joints
    assert loaded.skeleton == minimum_spanning_tree(torch.tensor(points))
    assert sorted(tuple(sorted(edge)) for edge in loaded.skeleton) == [(0, 2), (1, 2), (1, 3)]


def test_points_are_rescaled_to_the_image_used(tmp_path):
    write_json(tmp_path / "s.json", {"image_size": [100, 200], "keypoints": [[200, 100], [50, 25], [0.5, 0.5]]})
    loaded = load_support(tmp_path / "s.json", (50, 400))
    assert torch.allclose(loaded.points, torch.tensor([[400.0, 50.0], [100.0, 12.5], [1.0, 0.25]]))
    assert loaded.image_size == (50, 400)


VALID = {"image_size": [20, 30], "keypoints": [[1, 2], [3.5, 4]]}


@pytest.mark.parametrize(
    ("content", "expected_count", "message"),
    [
        (None, None, "not found"),
        ("{", None, "not valid JSON"),
        ([1, 2], None, "JSON object"),
        ({"image_size": [20, 30]}, None, 'no "keypoints"'),
        ({"keypoints": [[1, 2]]}, None, '"image_size" must be [height, width]'),
        ({"image_size": [20, 0], "keypoints": [[1, 2]]}, None, '"image_size" must be [height, width]'),
        ({"image_size": [20, 30], "keypoints": []}, None, "non-empty list"),
        (VALID, 3, "has 2 keypoints but 3 were expected"),
        ({**VALID, "keypoints": [[1, 2], [3]]}, None, "keypoint 1 is [3], expected a pair of numbers"),
        ({**VALID, "keypoints": [[1, 2], ["a", 3]]}, None, 'keypoint 1 is ["a", 3], expected a pair of numbers'),
        ({**VALID, "keypoints": [[True, 2]]}, None, "keypoint 0 is [true, 2]"),
        ({**VALID, "keypoints": [[1, 2], [31, 5]]}, None, "keypoint 1 [31, 5] is outside the image_size 20x30"),
        ({**VALID, "keypoints": [[-0.5, 2], [3, 5]]}, None, "keypoint 0 [-0.5, 2] is outside"),
        ({**VALID, "keypoints": [[1, 2], [3, 20.5]]}, None, "and y in [0, 20]"),
        ({**VALID, "skeleton": [[0]]}, None, "skeleton edge 0 is [0], expected [i, j]"),
        ({**VALID, "skeleton": [[0, 1], [1, 2]]}, None, "edge 1 [1, 2] refers to keypoint 2, but the 2 keypoints"),
        ({**VALID, "skeleton": [[-1, 1]]}, None, "refers to keypoint -1"),
        ({**VALID, "skeleton": [[1, 1]]}, None, "edge 0 [1, 1] joins keypoint 1 to itself"),
        ({**VALID, "skeleton": [[0, 1], [1, 0]]}, None, "edge 1 [1, 0] repeats edge 0"),
        ({**VALID, "skeleton": "0-1"}, None, '"skeleton" must be a list'),
        ({**VALID, "names": ["a"]}, None, "has 1 names for 2 keypoints"),
        ({**VALID, "names": ["a", 2]}, None, '"names" must be a list of strings'),
        ({**VALID, "joints": "yes"}, None, '"joints" must be true or false'),
    ],
)
def test_bad_files_raise_one_clear_line(tmp_path, content, expected_count, message):
    path = tmp_path / "support.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        write_json(path, content)
    with pytest.raises(DynaPoseError) as error:
        load_support(path, (20, 30), expected_count=expected_count)
    text = str(error.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_automatic_points_are_inside_the_mask_and_well_spread():
    mask = table_mask()
    support = automatic_support(mask, count=14)
    points = support.points
    assert points.shape == (14, 2)
    assert support.image_size == (60, 80)
    assert support.names == [f"kp{i}" for i in range(14)]
    pixels = points.floor().long()  # [N, 2] (column, row)
    assert (mask[pixels[:, 1], pixels[:, 0]] == 1).all()
    distances = (points[:, None] - points[None]).norm(dim=-1) + torch.eye(14) * 1e9  # [N, N]
    assert distances.min() > 0.15 * math.sqrt(float(mask.sum()))
    assert torch.equal(automatic_support(mask, count=14).points, points)  # deterministic


def test_automatic_points_keep_off_the_silhouette():
    mask = table_mask()
    points = automatic_support(mask, count=14).points.floor().long()  # [N, 2] (column, row)
    for column, row in points.tolist():
        assert (mask[row - 1 : row + 2, column - 1 : column + 2] == 1).all()


def test_thin_masks_still_get_points():
    mask = torch.zeros(32, 32)
    mask[5, 1:31] = 1.0  # one pixel wide: erosion leaves nothing
    support = automatic_support(mask, count=14)
    assert (support.points[:, 1] == 5.5).all()
    assert len(set(support.points[:, 0].tolist())) == 14


def test_automatic_support_needs_enough_foreground():
    mask = torch.zeros(16, 16)
    mask[3, 3:8] = 1.0
    with pytest.raises(DynaPoseError, match="5 foreground pixels, too few for 14"):
        automatic_support(mask, count=14)


def test_automatic_skeleton_is_a_spanning_tree_shorter_than_the_index_chain():
    support = automatic_support(table_mask(), count=14)
    assert len(support.skeleton) == 13
    assert connects_all(14, support.skeleton)
    chain = [(i, i + 1) for i in range(13)]
    assert tree_length(support.points, support.skeleton) <= tree_length(support.points, chain) + 1e-6


@pytest.mark.parametrize("seed", range(5))
def test_minimum_spanning_tree_matches_kruskal(seed):
    points = torch.rand(9, 2, generator=torch.Generator().manual_seed(seed)) * 100  # [9, 2]
    edges = minimum_spanning_tree(points)
    assert len(edges) == 8 and connects_all(9, edges)
    assert tree_length(points, edges) == pytest.approx(kruskal_length(points), rel=1e-9)


def test_template_writes_json_and_numbered_preview(tmp_path):
    mask = table_mask()
    image = torch.cat([torch.full((*mask.shape, 3), 0.5), mask[..., None]], dim=-1)  # grey object: no red
    written = write_support_template(tmp_path / "template.json", image, count=14)
    loaded = load_support(tmp_path / "template.json", (60, 80), expected_count=14)
    assert torch.equal(loaded.points, automatic_support(mask, count=14).points)
    assert loaded.skeleton == written.skeleton and loaded.names == written.names
    assert not loaded.joints and not automatic_support(mask, count=14).joints  # spread over the mask, not joints
    preview = load_png(tmp_path / "template.png")  # [sH, sW, 3]
    assert preview.shape == (60 * 9, 80 * 9, 3)  # upscaled by 9 = ceil(512 / 60)
    red = (preview[..., 0] > 0.8) & (preview[..., 1] < 0.2) & (preview[..., 2] < 0.2)
    assert red.sum() > 14 * 20  # the point markers were drawn


def test_template_must_be_json(tmp_path):
    with pytest.raises(DynaPoseError, match=r"must be a \.json file"):
        write_support_template(tmp_path / "template.png", torch.ones(8, 8, 4), count=2)
