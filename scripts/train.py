"""Train DynaPose4D: `python scripts/train.py image=cat.png` or `experiment=synthetic`.

Thin on purpose: compose the Hydra config, call `dynapose4d.pipeline.run`, and turn
user-fixable problems into one-line errors.
"""

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dynapose4d.cli import expand_shortcuts  # noqa: E402
from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.pipeline import run  # noqa: E402

log = logging.getLogger("dynapose4d")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    try:
        run_dir = run(cfg, overrides=list(HydraConfig.get().overrides.task))
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: the last checkpoint is saved; rerun with resume=true to continue", file=sys.stderr)
        sys.exit(130)
    log.info("finished: %s", run_dir)


if __name__ == "__main__":
    sys.argv[1:] = expand_shortcuts(sys.argv[1:])
    main()
