"""Evaluation results on disk: metrics.json, a per-object/per-view CSV, a markdown table and a plot."""

import csv
import json
import math
from pathlib import Path

METRIC_ORDER = ("psnr", "ssim", "lpips", "clip", "fvd")


def write_report(result: dict, directory: Path, title: str) -> None:
    """`result` = {"objects": {name: {metric: {"mean", "per_view"} | {"skipped"}}}, "summary": {...}}."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_csv(result["objects"], directory / "scores.csv")
    (directory / "table.md").write_text(markdown_table(result, title))
    _plot(result["objects"], directory / "scores.png", title)


def _write_csv(objects: dict, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["object", "view", "metric", "value"])
        for name, scores in objects.items():
            for metric, entry in scores.items():
                for view, value in enumerate(entry.get("per_view", [])):
                    writer.writerow([name, view, metric, value])


def markdown_table(result: dict, title: str) -> str:
    """One row per object and a mean row; skipped metrics are listed with their reasons."""
    metrics = [metric for metric in METRIC_ORDER if any(metric in s for s in result["objects"].values())]
    shown = [metric for metric in metrics if "mean" in result["summary"].get(metric, {})]
    lines = [f"## {title}", "", "| object | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
    for name, scores in result["objects"].items():
        lines.append(f"| {name} | " + " | ".join(_number(scores[m].get("mean")) for m in shown) + " |")
    lines.append("| **mean** | " + " | ".join(_number(result["summary"][m]["mean"]) for m in shown) + " |")
    summary = result["summary"]
    if "mean" in summary.get("fvd", {}):
        lines += [
            "",
            f"FVD (Consistent4D's: per view, mean over views, then objects): {_number(summary['fvd']['mean'])}",
        ]
        lines += [f"FVD pooled (one distance over every view and object): {_number(summary['fvd_pooled']['mean'])}"]
        lines += [f"FVD features: {summary['fvd']['network']}"]
    skipped = {m: entry["skipped"] for m, entry in result["summary"].items() if "skipped" in entry}
    if skipped:
        lines += ["", "Skipped:"] + [f"- {metric}: {reason}" for metric, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.4g}"


def _plot(objects: dict, path: Path, title: str) -> None:
    """Per-view bars for each object: PSNR (it needs no weights), or CLIP where there is no ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "psnr" if all("per_view" in scores.get("psnr", {}) for scores in objects.values()) else "clip"
    figure, axis = plt.subplots(figsize=(1.5 + 1.2 * len(objects), 3.5))
    for index, scores in enumerate(objects.values()):
        values = [min(value, 60.0) for value in scores[metric].get("per_view", [])]  # identical frames give inf PSNR
        width = 0.8 / len(values)
        for view, value in enumerate(values):
            axis.bar(index - 0.4 + width * (view + 0.5), value, width, color=f"C{view}", label=f"view {view}")
    axis.set_xticks(range(len(objects)), list(objects), rotation=30, ha="right")
    axis.set_ylabel({"psnr": "PSNR (dB)", "clip": "CLIP similarity"}[metric])
    axis.set_title(title)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axis.legend(unique.values(), unique.keys(), fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
