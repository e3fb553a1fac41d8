"""Support keypoints: the points on the input image that PoseAnything follows through the driving video.

They come from a JSON file the user writes (or edits, starting from `write_support_template`), or from
`automatic_support`, which spreads points over the object's mask. Coordinates follow
`dynapose4d.keypoints`: continuous pixels (x, y), x right, y down, pixel (j, i) covering
[j, j+1) x [i, i+1), so pixel centres sit at +0.5 and a point on the image lies in [0, W] x [0, H].

JSON format:

    {"image_size": [H, W], "keypoints": [[x, y], ...], "skeleton": [[i, j], ...], "names": ["...", ...],
     "joints": true}

- `image_size`: height and width in pixels of the image the points were placed on.
- `keypoints`: one [x, y] per keypoint, in pixels of that image: x to the right and y down from its
  top-left corner, pixel centres at +0.5 (the centre of the top-left pixel is [0.5, 0.5]). If
  `image_size` differs from the size of the image the run uses, the points are rescaled to it (x by
  the ratio of the widths, y by the ratio of the heights), so annotate an image framed like that one.
- `skeleton` (optional): edges between keypoints as pairs of 0-based indices into `keypoints`, each
  edge listed once. Without it, the edges are the minimum spanning tree of the points (the edges of
  least total length that connect them all).
- `names` (optional): one name per keypoint; the default is "kp0", "kp1", ... "kp<N-1>".
- `joints` (optional, default true): whether the points are the subject's joints and the skeleton's edges its
  bones. `dynamic/deformation=auto` poses a skeleton on joints and uses a free field otherwise. The template
  that `write_support_template` writes says false, since its points are spread over the mask: set it to true
  once they sit on the joints.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DynaPoseError
from ..media import atomic_output, save_png, to_uint8
from .image import WHITE, composite

DEFAULT_COUNT = 14  # PoseAnything's setting
INSET_FRACTION = 0.03  # of sqrt(object area): automatic points keep this far inside the silhouette
PREVIEW_MIN_SIDE = 512  # the template preview is upscaled to at least this so the numbers stay legible
POINT_COLOUR, SKELETON_COLOUR = (230, 30, 30), (30, 160, 60)  # RGB


@dataclass
class SupportKeypoints:
    """Support keypoints on one image, in the conventions of the module docstring."""

    points: Tensor  # [N, 2] (x, y) pixels
    skeleton: list[tuple[int, int]]  # edges as pairs of 0-based indices into points
    names: list[str]  # [N]
    image_size: tuple[int, int]  # (height, width) of the image the points are on
    joints: bool = True  # the points are joints and the skeleton their bones; False: spread over the mask


def load_support(path: str | Path, image_size: tuple[int, int], expected_count: int | None = None) -> SupportKeypoints:
    """Read and check a support JSON file, rescaling its points to `image_size` (height, width).

    Raises DynaPoseError naming the problem for anything but a valid file with `expected_count` points.
    """
    path = Path(path)
    data = _read_json(path)
    source_size = _image_size(data, path)
    points = _points(data, path, source_size, expected_count)  # [N, 2] on the annotated image
    scale = torch.tensor([image_size[1] / source_size[1], image_size[0] / source_size[0]], dtype=torch.float64)
    points = (points * scale).float()  # [N, 2] on the image the run uses
    skeleton = _skeleton(data, path, points)
    names = _names(data, path, len(points))
    joints = data.get("joints", True)
    if not isinstance(joints, bool):
        raise DynaPoseError(f'{path}: "joints" must be true or false, got {joints!r}')
    return SupportKeypoints(points, skeleton, names, (int(image_size[0]), int(image_size[1])), joints)


def save_support(path: str | Path, support: SupportKeypoints) -> None:
    """Write `support` in the JSON format above, one keypoint and one edge per line so it is easy to edit."""
    text = (
        "{\n"
        f'  "image_size": {json.dumps(list(support.image_size))},\n'
        f'  "keypoints": {_json_rows(support.points.tolist())},\n'
        f'  "skeleton": {_json_rows([[int(i), int(j)] for i, j in support.skeleton])},\n'
        f'  "names": {json.dumps(support.names)},\n'
        f'  "joints": {json.dumps(support.joints)}\n'
        "}\n"
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text)


def write_support_template(path: str | Path, image_rgba: Tensor, count: int = DEFAULT_COUNT) -> SupportKeypoints:
    """Write the automatic support keypoints of `image_rgba` [H, W, 4] (alpha = mask) as an editable JSON
    file, plus `<stem>.png` beside it: the image with the numbered points and the skeleton, to tell them apart.
    """
    path = Path(path)
    preview = path.with_suffix(".png")
    if preview == path:
        raise DynaPoseError(f"the support keypoints template must be a .json file, got {path}")
    support = automatic_support(image_rgba[..., 3], count)
    save_support(path, support)
    save_png(preview, draw_support(image_rgba, support))
    return support


def automatic_support(mask: Tensor, count: int = DEFAULT_COUNT) -> SupportKeypoints:
    """`count` well-spread points on the foreground (mask [H, W] >= 0.5) and their minimum spanning tree.

    Farthest-point sampling over foreground pixel centres, from the one farthest from the mask's
    centroid, keeps the points apart. It samples the mask eroded by INSET_FRACTION of the object's size
    (the whole mask when too little of it survives), so no point sits on the half-transparent silhouette.
    Deterministic: ties go to the first pixel in row-major order.
    """
    if count < 1:
        raise DynaPoseError(f"the number of support keypoints must be at least 1, got {count}")
    foreground = mask >= 0.5  # [H, W]
    area = int(foreground.sum())
    if area < count:
        raise DynaPoseError(f"the object mask has {area} foreground pixels, too few for {count} support keypoints")
    candidates = _erode(foreground, round(INSET_FRACTION * math.sqrt(area)))  # [H, W]
    if int(candidates.sum()) < count:
        candidates = foreground
    pixels = candidates.nonzero().flip(1).double() + 0.5  # [P, 2] (x, y) pixel centres, exact in float64
    centroid = (foreground.nonzero().flip(1).double() + 0.5).mean(dim=0)  # [2]
    first = int((pixels - centroid).norm(dim=1).argmax())
    points = pixels[farthest_points(pixels, count, first)].float()  # [N, 2]
    names = [f"kp{index}" for index in range(count)]
    size = (mask.shape[0], mask.shape[1])
    return SupportKeypoints(points, minimum_spanning_tree(points), names, size, joints=False)


def minimum_spanning_tree(points: Tensor) -> list[tuple[int, int]]:
    """Edges (parent, child) of the Euclidean minimum spanning tree of points [N, D], by Prim's algorithm from 0;
    each child is added after its parent."""
    points = points.double()
    distances = (points[:, None] - points[None]).norm(dim=-1)  # [N, N]
    in_tree = torch.zeros(len(points), dtype=torch.bool)
    in_tree[0] = True
    cost = distances[0].clone()  # [N] length of each point's shortest link to the tree
    parent = torch.zeros(len(points), dtype=torch.long)  # [N] the tree point at the other end of that link
    edges = []
    for _ in range(len(points) - 1):
        child = int(cost.masked_fill(in_tree, math.inf).argmin())
        edges.append((int(parent[child]), child))
        in_tree[child] = True
        closer = distances[child] < cost  # [N]
        cost = torch.where(closer, distances[child], cost)
        parent = torch.where(closer, child, parent)
    return edges


def draw_support(image_rgba: Tensor, support: SupportKeypoints) -> Tensor:
    """RGB preview [sH, sW, 3]: the image [H, W, 4] on white, upscaled by an integer s, with the skeleton and
    the points labelled by their index."""
    height, width = image_rgba.shape[:2]
    if (height, width) != tuple(support.image_size):
        raise ValueError(f"support keypoints are on a {support.image_size} image, not {(height, width)}")
    scale = max(1, math.ceil(PREVIEW_MIN_SIDE / min(height, width)))
    canvas = to_uint8(composite(image_rgba, WHITE))  # [H, W, 3]
    canvas = cv2.resize(canvas, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    centres = [(round(x * scale), round(y * scale)) for x, y in support.points.tolist()]
    for i, j in support.skeleton:
        cv2.line(canvas, centres[i], centres[j], SKELETON_COLOUR, 2, cv2.LINE_AA)
    for index, (x, y) in enumerate(centres):
        cv2.circle(canvas, (x, y), 5, POINT_COLOUR, -1, cv2.LINE_AA)
        for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 1)):  # outlined, so it reads on any colour
            cv2.putText(
                canvas, str(index), (x + 7, y - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, thickness, cv2.LINE_AA
            )
    return torch.from_numpy(canvas).float() / 255.0


def farthest_points(points: Tensor, count: int, first: int) -> Tensor:
    """Indices [count] into points [P, D] from index `first`: each next one is the point farthest from those
    already chosen (the lowest index on a tie)."""
    chosen = [first]
    distances = (points - points[first]).square().sum(dim=1)  # [P] squared distance to the nearest chosen
    for _ in range(count - 1):
        chosen.append(int(distances.argmax()))
        distances = torch.minimum(distances, (points - points[chosen[-1]]).square().sum(dim=1))
    return torch.tensor(chosen)


def _erode(foreground: Tensor, radius: int) -> Tensor:
    """Foreground [H, W] pixels with no background (nor image border) within `radius` (chessboard distance)."""
    background = F.pad((~foreground).float()[None, None], (radius,) * 4, value=1.0)  # [1, 1, H+2r, W+2r]
    return F.max_pool2d(background, 2 * radius + 1, stride=1)[0, 0] == 0


def _json_rows(rows: list) -> str:
    """A JSON list with one item per line."""
    return "[\n" + ",\n".join(f"    {json.dumps(row)}" for row in rows) + "\n  ]"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DynaPoseError(f"support keypoints file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DynaPoseError(f"support keypoints file {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise DynaPoseError(f'{path} must hold a JSON object {{"image_size": [H, W], "keypoints": [[x, y], ...]}}')
    return data


def _image_size(data: dict, path: Path) -> tuple[int, int]:
    size = data.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
        found = json.dumps(size) if "image_size" in data else "nothing"
        raise DynaPoseError(f'{path}: "image_size" must be [height, width] of the annotated image, found {found}')
    return size[0], size[1]


def _points(data: dict, path: Path, size: tuple[int, int], expected_count: int | None) -> Tensor:
    """Checked keypoints [N, 2] (float64) on the annotated image of `size` (height, width)."""
    if "keypoints" not in data:
        raise DynaPoseError(f'{path} has no "keypoints": give a list of [x, y] pixel positions')
    rows = data["keypoints"]
    if not isinstance(rows, list) or not rows:
        raise DynaPoseError(f'{path}: "keypoints" must be a non-empty list of [x, y] pixel positions')
    if expected_count is not None and len(rows) != expected_count:
        raise DynaPoseError(f"{path} has {len(rows)} keypoints but {expected_count} were expected")
    height, width = size
    for index, point in enumerate(rows):
        if not (isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point)):
            raise DynaPoseError(f"{path}: keypoint {index} is {json.dumps(point)}, expected a pair of numbers [x, y]")
        x, y = point
        if not (0 <= x <= width and 0 <= y <= height):  # also catches NaN
            raise DynaPoseError(
                f"{path}: keypoint {index} {json.dumps(point)} is outside the image_size {height}x{width} "
                f"(height x width): x must be in [0, {width}] and y in [0, {height}]"
            )
    return torch.tensor(rows, dtype=torch.float64)


def _skeleton(data: dict, path: Path, points: Tensor) -> list[tuple[int, int]]:
    """Checked skeleton edges; the minimum spanning tree of `points` [N, 2] when the file has none."""
    rows = data.get("skeleton")
    if rows is None:
        return minimum_spanning_tree(points)
    if not isinstance(rows, list):
        raise DynaPoseError(f'{path}: "skeleton" must be a list of [i, j] keypoint index pairs')
    count, first_index, edges = len(points), {}, []
    for index, edge in enumerate(rows):
        if not (isinstance(edge, list) and len(edge) == 2 and all(_is_int(v) for v in edge)):
            raise DynaPoseError(
                f"{path}: skeleton edge {index} is {json.dumps(edge)}, expected [i, j] keypoint indices"
            )
        for end in edge:
            if not 0 <= end < count:
                raise DynaPoseError(
                    f"{path}: skeleton edge {index} {edge} refers to keypoint {end}, "
                    f"but the {count} keypoints have indices 0 to {count - 1}"
                )
        i, j = edge
        if i == j:
            raise DynaPoseError(f"{path}: skeleton edge {index} {edge} joins keypoint {i} to itself")
        key = (min(i, j), max(i, j))  # edges are undirected
        if key in first_index:
            raise DynaPoseError(f"{path}: skeleton edge {index} {edge} repeats edge {first_index[key]}")
        first_index[key] = index
        edges.append((i, j))
    return edges


def _names(data: dict, path: Path, count: int) -> list[str]:
    names = data.get("names")
    if names is None:
        return [f"kp{index}" for index in range(count)]
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise DynaPoseError(f'{path}: "names" must be a list of strings, one per keypoint')
    if len(names) != count:
        raise DynaPoseError(f"{path} has {len(names)} names for {count} keypoints")
    return names


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
