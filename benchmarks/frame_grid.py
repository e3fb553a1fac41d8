"""Frames of dynamic-stage runs beside their ground truth, in one PNG: to look at before believing a table.

    python benchmarks/frame_grid.py --sample <out>/samples/quadruped-0 \\
        --run hexplane=<out>/runs/quadruped-0-s0/hexplane/Ref+PAL --run skeleton=<out>/runs/.../skeleton/Ref+PAL \\
        --frames 0 4 8 12 --view 1 --out benchmarks/results/frames.png

Rows, top to bottom: the sample's driving frames (the reference view), each run's reference view,
the sample's held-out view `--view` at the same frames, then each run there. A run is drawn from
its per-frame PLYs (dynamic/frames/NNN.ply) at the cameras the ground truth was rendered with,
over white; each row is labelled on its left.
"""

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynapose4d.data.image import composite  # noqa: E402
from dynapose4d.data.sample import load_sample  # noqa: E402
from dynapose4d.gaussians import GaussianModel  # noqa: E402
from dynapose4d.render.views import render_views  # noqa: E402

WHITE = torch.ones(3)
LABEL_WIDTH = 96


def run_frames(run_dir: Path, frames: list[int], cameras) -> list[torch.Tensor]:
    """Renders [H, W, 3] of the run's deformed model at each of `frames`, from one camera."""
    images = []
    for frame in frames:
        model = GaussianModel.load_ply(run_dir / "dynamic" / "frames" / f"{frame:03d}.ply")
        images.append(render_views(model.activated(), cameras, WHITE, "torch")[0])
    return images


def labelled_row(label: str, images: list[torch.Tensor]) -> np.ndarray:
    row = (torch.cat(images, dim=1).numpy() * 255).round().astype(np.uint8)  # [H, F W, 3]
    tag = np.full((row.shape[0], LABEL_WIDTH, 3), 255, np.uint8)
    for line, text in enumerate(label.split("\n")):
        cv2.putText(tag, text, (4, 16 + 14 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([tag, row], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=Path, required=True, help="the ground-truth sample the runs trained on")
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR", help="repeatable")
    parser.add_argument("--frames", type=int, nargs="+", default=[0, 4, 8, 12])
    parser.add_argument("--view", type=int, default=0, help="which of the sample's held-out views")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    sample = load_sample(args.sample)
    runs = [(label, Path(directory)) for label, directory in (item.split("=", 1) for item in args.run)]
    reference, heldout = sample.reference_camera(), sample.eval_cameras()[args.view : args.view + 1]
    azimuth = sample.eval_views[args.view].get("azimuth", "?")
    rows = [labelled_row("driving\n(truth)", [composite(sample.driving_video[f], WHITE) for f in args.frames])]
    rows += [labelled_row(f"{label}\nreference", run_frames(path, args.frames, reference)) for label, path in runs]
    truth = [composite(sample.eval_renders[f, args.view], WHITE) for f in args.frames]
    rows.append(labelled_row(f"held-out\naz {azimuth}\n(truth)", truth))
    rows += [labelled_row(f"{label}\nheld-out", run_frames(path, args.frames, heldout)) for label, path in runs]
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}: frames {args.frames}, held-out view {args.view} (azimuth {azimuth})")


if __name__ == "__main__":
    main()
