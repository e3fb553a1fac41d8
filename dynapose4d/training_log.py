"""What a training stage records while it trains: TensorBoard events and a plain losses.csv.

Both go into <run_dir>/tb/<stage>/, so `tensorboard --logdir <run_dir>` shows a run and
`tensorboard --logdir outputs/multirun/<time>` compares the jobs of a sweep. A resumed stage
continues both where its checkpoint stopped: the steps it trains again replace the ones the
interrupted attempt logged after that checkpoint.
"""

import csv
from pathlib import Path

import torch

CSV_NAME = "losses.csv"


class TrainingLog:
    def __init__(self, directory: Path, start_step: int, tensorboard: bool = True):
        directory.mkdir(parents=True, exist_ok=True)
        self.csv_path = directory / CSV_NAME
        self.columns, rows = _read_csv(self.csv_path, before=start_step + 1)
        _write_csv(self.csv_path, self.columns, rows)  # without the steps an interrupted attempt logged past start_step
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the interrupted attempt's events from start_step on (TensorBoard's own resume rule).
            self.writer = SummaryWriter(str(directory), purge_step=start_step + 1 if start_step else None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """One row of losses.csv and one TensorBoard scalar per value (`a/b` groups them in TensorBoard)."""
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        new = [key for key in values if key not in self.columns]
        if new:  # a term that appears later (rare): the file is rewritten with the wider header
            _, rows = _read_csv(self.csv_path)
            self.columns += new
            _write_csv(self.csv_path, self.columns, rows)
        with self.csv_path.open("a", newline="") as file:
            csv.DictWriter(file, ["step", *self.columns], restval="").writerow({"step": step, **values})

    def image(self, tag: str, image: torch.Tensor, step: int) -> None:
        """An RGB image [H, W, 3] in [0, 1] (TensorBoard only)."""
        if self.writer is not None:
            self.writer.add_image(tag, image.detach().clamp(0, 1).cpu(), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read_csv(path: Path, before: int | None = None) -> tuple[list[str], list[dict]]:
    """(value columns, rows) of a losses.csv; only rows of steps < `before` when given."""
    if not path.exists():
        return [], []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = [row for row in reader if before is None or int(row["step"]) < before]
        return [name for name in reader.fieldnames or [] if name != "step"], rows


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, ["step", *columns], restval="")
        writer.writeheader()
        writer.writerows(rows)
