"""Train DynaPose4D: `python scripts/train.py image=cat.png` or `experiment=synthetic`.

Thin on purpose: compose the Hydra config, call `dynapose4d.pipeline.run`, and turn
user-fixable problems into one-line errors. With -m (a sweep) each job gets its own run
directory, and a job that fails leaves a FAILED file there instead of ending the sweep.
"""

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)  # run from a checkout without installing
# ... in the processes a sweep launcher starts too (submitit, SLURM): they unpickle the job and import dynapose4d
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))

from dynapose4d.cli import expand_shortcuts, reject_moved_keys  # noqa: E402
from dynapose4d.errors import DynaPoseError  # noqa: E402
from dynapose4d.pipeline import run  # noqa: E402
from dynapose4d.stages.training import Stopped  # noqa: E402
from dynapose4d.sweeps import FAILED, clear_failure, failure_reason, job_run_dir, record_failure  # noqa: E402

log = logging.getLogger("dynapose4d")


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        run_sweep_job(cfg, hydra_cfg, overrides)
        return
    try:
        run_dir = run(cfg, overrides=overrides)
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM from a scheduler (training.Stopped)
        print(f"\n{interrupted(interrupt)}; rerun with resume=true to continue", file=sys.stderr)
        sys.exit(exit_code(interrupt))
    log.info("finished: %s", run_dir)


def interrupted(interrupt: KeyboardInterrupt) -> str:
    if isinstance(interrupt, Stopped):
        return f"stopped by {interrupt}: a checkpoint of the last finished step is saved"
    return "interrupted: the last periodic checkpoint is kept"


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process ended by it (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (interrupt.signum if isinstance(interrupt, Stopped) else signal.SIGINT)


def run_sweep_job(cfg: DictConfig, hydra_cfg: DictConfig, overrides: list[str]) -> None:
    """One job of a -m sweep, in its own run directory; a failure goes into its FAILED file and the sweep goes on."""
    run_dir = job_run_dir(Path(hydra_cfg.sweep.dir), hydra_cfg.job.num, overrides)
    try:
        if cfg.run_dir:  # every job would write into that one directory
            raise DynaPoseError(
                f"run_dir={cfg.run_dir} cannot hold every job of a sweep; set hydra.sweep.dir=... instead"
            )
        cfg.run_dir = str(run_dir)
        clear_failure(run_dir)
        run(cfg, overrides=overrides)
    except KeyboardInterrupt as interrupt:
        resume = f"resume=true hydra.sweep.dir={hydra_cfg.sweep.dir}"  # the same job directories again
        print(f"\n{interrupted(interrupt)}; rerun the sweep with {resume} to continue it", file=sys.stderr)
        sys.exit(exit_code(interrupt))
    except Exception as error:  # any job's failure, a bug included, must not end the other jobs
        bug = not isinstance(error, DynaPoseError)
        log.error("job %d failed: %s", hydra_cfg.job.num, failure_reason(error), exc_info=bug)
        try:
            record_failure(run_dir, error, overrides)
        except OSError as write_error:  # e.g. the output directory is not writable: the log above has it
            log.error("cannot write %s: %s", run_dir / FAILED, write_error)
        return
    log.info("finished: %s", run_dir)


if __name__ == "__main__":
    try:
        reject_moved_keys(sys.argv[1:])
    except DynaPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = expand_shortcuts(sys.argv[1:])
    main()
