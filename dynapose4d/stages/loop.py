"""The optimisation loop the training stages share: progress bar, periodic and Ctrl-C checkpoints."""

from typing import Protocol

from tqdm import tqdm


class Trainer(Protocol):
    step: int

    def train_step(self) -> dict[str, float]: ...  # one step; returns scalars for the progress bar

    def save(self) -> None: ...


def run_training(trainer: Trainer, iterations: int, checkpoint_every: int, name: str) -> None:
    """Step `trainer` from its current step (0, or where a checkpoint left it) to `iterations`.

    A checkpoint is written every `checkpoint_every` steps, at the end, and on Ctrl-C (the
    last finished step, so `resume=true` continues from there) before the interrupt propagates.
    """
    progress = tqdm(total=iterations, initial=trainer.step, desc=name, dynamic_ncols=True)
    try:
        while trainer.step < iterations:
            losses = trainer.train_step()
            progress.update(1)
            progress.set_postfix({key: f"{value:.3g}" for key, value in losses.items()})
            if trainer.step % checkpoint_every == 0:
                trainer.save()
    except KeyboardInterrupt:
        trainer.save()
        raise
    finally:
        progress.close()
    trainer.save()
