"""Write an editable support-keypoints template for an input image.

    python scripts/support_template.py cat.png support.json [--mask cat_mask.png] [--count 14]

The image is prepared exactly as `scripts/train.py image=cat.png` prepares it (mask, recentring
to `--border-ratio`, `--size` pixels), so the points in support.json are in the pixels of the
image the keypoints stage sees. support.png beside it shows the numbered points and skeleton;
move points or edit the skeleton in the JSON, then train with `keypoints.support=support.json`.
Once the points sit on the subject's joints and the skeleton's edges are its bones, set "joints": true,
so `dynamic/deformation=auto` poses a skeleton on them (left false, the run uses the free hexplane).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.data.image import load_reference_image  # noqa: E402
from dynapose4d.data.support import DEFAULT_COUNT, write_support_template  # noqa: E402
from dynapose4d.errors import DynaPoseError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("output", help="the JSON to write; a preview PNG of the same name goes beside it")
    parser.add_argument("--mask", default=None, help="mask image for an RGB input (white = object)")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="number of keypoints (default 14)")
    parser.add_argument("--size", type=int, default=256, help="as the training run's image_size")
    parser.add_argument("--border-ratio", type=float, default=0.2, help="as the training run's border_ratio")
    args = parser.parse_args()
    try:
        image = load_reference_image(args.image, args.size, args.mask, args.border_ratio)
        write_support_template(args.output, image, args.count)
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(
        f'wrote {args.output} and {Path(args.output).with_suffix(".png")}; it says "joints": false until you '
        "move the points onto the joints and set it to true"
    )


if __name__ == "__main__":
    main()
