"""The lifecycle every training stage shares: resume, the loop, checkpoints, stopping, the finish.

A stage subclasses TrainingStage. Its `__init__` takes the run (where it writes, the seed,
the device) and the parts it trains from as tensors and objects (images, models, a prior),
builds its optimizers and loss terms (terms/) and ends with `self.restore()`; `from_run(run)`
reads those parts from the run directory, which is what `execute` does before `fit()`. So a
test builds a stage from tensors without running the stages before it. It implements
`train_step` (one step: render, `evaluate_terms`, backward; returning the terms' values),
`trainable` (every tensor that trains, checked finite), `state_dict` / `load_state_dict`
(its own state beyond the step, optimizers and RNGs, which this base saves) and
`write_outputs`. `fit()` then:
  - resumes from <stage>/checkpoint.pt (resume=true), keeping the learning rates the config
    sets now rather than those the optimizer state remembers;
  - stops at the first non-finite loss or parameter with the step and the culprit named,
    keeping the last checkpoint (every checkpoint holds a finite state);
  - on Ctrl-C or SIGTERM (what SLURM sends before it kills a job) finishes the current step,
    saves, and stops; a second Ctrl-C stops at once, saving nothing;
  - logs every loss term and `diagnostics()` after each step, `images()` every
    log.images_every steps (<run_dir>/tb/<stage>/: TensorBoard and losses.csv), and with
    viewer=true shows `live_splats()` in the web viewer (monitor.py);
  - writes the outputs. The pipeline writes DONE after it has verified them.
"""

import contextlib
import logging
import math
import signal
import threading
from collections.abc import Iterator

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import DynaPoseError
from ..pretrained import PretrainedModel
from ..priors import Prior, prior_weights
from ..run import Run
from ..schedules import reference_warmup, step_ratio
from . import Stage
from .monitor import Monitor
from .terms import Term, weighted_total

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The stage saved its checkpoint and stopped on a signal; `signum` says which (exit 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class TrainingStage(Stage):
    terms: dict[str, Term]  # the enabled loss terms by name, weighted by `<stage>.loss` (terms/)
    prior: Prior | None = None  # the novel-view prior, None for `<stage>.prior=none`
    reference_mse: torch.Tensor | None = None  # the last step's ref_rgb term, for the log

    def __init__(self, run: Run, settings: DictConfig):
        self.run, self.cfg, self.settings, self.device = run, run.cfg, settings, run.device
        self.stage_dir = run.stage_dir(self.name)
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.step = 0
        self.generator = torch.Generator().manual_seed(run.cfg.seed)  # the stage's sampling: views, frames
        self._memo: dict[str, object] = {}

    # ----- what a stage implements ----------------------------------------------------------

    @classmethod
    def from_run(cls, run: Run) -> "TrainingStage":
        """The stage built from what the run directory holds (the earlier stages' outputs)."""
        raise NotImplementedError

    @classmethod
    def check(cls, cfg: DictConfig) -> list[PretrainedModel]:
        """The weights of the stage's novel-view prior, `<stage>.prior`."""
        return prior_weights(cfg[cls.name], cls.name)

    @classmethod
    def execute(cls, run: Run) -> None:
        cls.from_run(run).fit()

    def train_step(self) -> dict[str, float]:
        """One optimisation step; returns its loss terms (and other scalars for the progress bar)."""
        raise NotImplementedError

    def trainable(self) -> dict[str, torch.Tensor]:
        """Every tensor the optimizers change, by name: checked finite after each step."""
        raise NotImplementedError

    def named_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The stage's own state (models, schedules); step, optimizers and RNGs are the base's."""
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; may rebuild the optimizers (their states are loaded after)."""
        raise NotImplementedError

    def write_outputs(self) -> None:
        raise NotImplementedError

    # ----- the loss -------------------------------------------------------------------------

    def evaluate_terms(self, batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Every enabled term's value on `batch` (unweighted, to log) and their weighted sum, the objective."""
        values = {name: term(batch) for name, term in self.terms.items()}
        if "ref_rgb" in values:
            self.reference_mse = values["ref_rgb"].detach()
        return values, weighted_total(values, self.loss_weights())

    def loss_weights(self) -> dict[str, float]:
        """`<stage>.loss`, with the reference terms ramped up over the stage when `ref_warmup` is on."""
        weights = {name: float(weight) for name, weight in self.settings.loss.items()}
        warmup = reference_warmup(self.step, self.settings.iterations, reference_warmup_enabled(self.settings))
        return {name: weight * warmup if name.startswith("ref_") else weight for name, weight in weights.items()}

    def step_ratio(self) -> float:
        """Training progress in [0, 1]: priors anneal on it (SDS's max timestep)."""
        return step_ratio(self.step, self.settings.iterations)

    def memo(self, key: str, make):
        """`make()`, built once per stage and shared by the terms that ask for `key` (a neighbour graph)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def diagnostics(self) -> dict[str, float]:
        """Scalars logged beside the losses after each step: the learning rates, the training render's PSNR
        at the reference view (from `self.reference_mse`, set by train_step) and the SDS timestep."""
        values = {
            f"lr/{group.get('name', f'{key}.{index}')}": group["lr"]
            for key, optimizer in self.named_optimizers().items()
            for index, group in enumerate(optimizer.param_groups)
        }
        if self.reference_mse is not None:
            values["train/reference_psnr"] = -10 * torch.log10(self.reference_mse).item()
        # the step just taken used the timestep of the step before
        timestep = (
            None if self.prior is None else self.prior.timestep(step_ratio(self.step - 1, self.settings.iterations))
        )
        if timestep is not None:
            values["train/sds_timestep"] = timestep
        return values

    def images(self) -> dict[str, torch.Tensor]:
        """RGB images [H, W, 3] to look at in TensorBoard every log.images_every steps, by tag."""
        return {}

    def live_splats(self) -> list:
        """The current model for the live viewer (viewer=true): one viewer.Splats per frame."""
        raise NotImplementedError

    def step_generator(self) -> torch.Generator:
        """A generator seeded by the run's seed and the step alone: its draws (SDS noise seeds) repeat on
        resume without a saved state, and leave the stage's own sampling (`self.generator`) untouched."""
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)

    # ----- checkpoints ----------------------------------------------------------------------

    @property
    def checkpoint_path(self):
        return self.run.checkpoint_path(self.name)

    def save(self) -> None:
        state = {
            **self.state_dict(),
            "step": self.step,
            "optimizers": {key: optimizer.state_dict() for key, optimizer in self.named_optimizers().items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(state, self.checkpoint_path)

    def restore(self) -> None:
        """Continue from the stage's checkpoint when resuming; the config's learning rates win over the saved ones."""
        path = self.checkpoint_path
        if not (self.cfg.resume and path.exists()):
            return
        checkpoint = load_checkpoint(path)
        try:
            self.load_state_dict(checkpoint)
            for key, optimizer in self.named_optimizers().items():
                configured = [group["lr"] for group in optimizer.param_groups]
                optimizer.load_state_dict(checkpoint["optimizers"][key])
                for group, lr in zip(optimizer.param_groups, configured):
                    group["lr"] = lr  # load_state_dict brings back the old rates: a changed lr= must apply
            self.generator.set_state(checkpoint["generator"])
            torch.set_rng_state(checkpoint["torch_rng"])
            self.step = checkpoint["step"]
        except DynaPoseError:
            raise
        except (KeyError, ValueError, RuntimeError) as error:  # another version's or another config's checkpoint
            raise DynaPoseError(
                f"{path} does not fit this {self.name} stage ({type(error).__name__}: {error}); "
                "delete it to restart the stage from its first step"
            ) from None
        log.info("%s: resumed at step %d from %s", self.name, self.step, path)

    # ----- the loop -------------------------------------------------------------------------

    def fit(self) -> None:
        """Train from the current step to `iterations`, then write the outputs."""
        iterations, every = self.settings.iterations, self.settings.checkpoint_every
        progress = tqdm(total=iterations, initial=self.step, desc=self.name, dynamic_ncols=True)
        monitor = Monitor(self)
        try:
            with stop_requests() as requested:
                while self.step < iterations:
                    values = self.train_step()
                    self.check_finite(values)
                    progress.update(1)
                    progress.set_postfix({key: f"{value:.3g}" for key, value in values.items()})
                    monitor.after_step(values)
                    if requested:
                        self.save()
                        log.warning("%s: checkpoint saved at step %d; resume=true continues", self.name, self.step)
                        raise Stopped(requested[0])
                    if self.step % every == 0:
                        self.save()
        finally:
            progress.close()
            monitor.close()
        self.save()
        self.write_outputs()

    def check_finite(self, values: dict[str, float]) -> None:
        """Stop at the first NaN or inf, in a loss or in a parameter, before it reaches a checkpoint."""
        culprit = next((f"loss {key} is {value}" for key, value in values.items() if not math.isfinite(value)), None)
        if culprit is None:
            tensors = self.trainable()
            finite = torch.stack([tensor.detach().isfinite().all() for tensor in tensors.values()]).tolist()
            culprit = next((f"parameter {key} is not finite" for key, ok in zip(tensors, finite) if not ok), None)
        if culprit is not None:
            kept = f"the last checkpoint, {self.checkpoint_path}, is kept" if self.checkpoint_path.exists() else ""
            raise DynaPoseError(
                f"{self.name} diverged at step {self.step}: {culprit}; nothing from this step was saved"
                f"{' and ' + kept if kept else ''}. Lower {self.name}.lr or the loss weights, then rerun "
                "(resume=true continues from that checkpoint)"
            )


def reference_warmup_enabled(settings: DictConfig) -> bool:
    """`<stage>.ref_warmup`: true | false | auto, DreamGaussian's choice per prior (on only for Zero123-XL)."""
    choice = settings.ref_warmup
    return settings.prior == "zero123" if choice == "auto" else choice


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """Within the block Ctrl-C and SIGTERM only ask to stop: the list yielded gets the signal's number.

    The loop stops at the end of its step with a checkpoint; a second Ctrl-C raises
    KeyboardInterrupt at once. Signal handlers only exist in the main thread: elsewhere
    the signals keep their usual meaning.
    """
    requested: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def ask_to_stop(signum, frame):
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)
        log.warning("%s: stopping after this step to save a checkpoint (Ctrl-C again stops at once)",
                    signal.Signals(signum).name)  # fmt: skip

    previous = {signum: signal.signal(signum, ask_to_stop) for signum in STOP_SIGNALS}
    try:
        yield requested
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
