"""Results as CLIP_benchmark writes them (one JSON per model, dataset and task) and one combined table."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

from evaluation.suite import Result

LANGUAGE = "en"


def benchmark_record(result: Result, model: str, pretrained: str) -> dict:
    """CLIP_benchmark's JSON layout: dataset, model, pretrained, task, metrics, language."""
    return {
        "dataset": result.dataset,
        "model": model,
        "pretrained": pretrained,
        "task": result.task,
        "metrics": dict(result.metrics),
        "language": LANGUAGE,
    }


def record_filename(record: dict) -> str:
    """CLIP_benchmark's default output name, `{dataset}_{pretrained}_{model}_{language}_{task}.json`, '/' as '_'."""
    name = "_".join(record[k] for k in ("dataset", "pretrained", "model", "language", "task"))
    return name.replace("/", "_") + ".json"


def write_records(records: Sequence[dict], directory: str) -> list[str]:
    """One JSON file per record in `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for record in records:
        path = os.path.join(directory, record_filename(record))
        with open(path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)
        paths.append(path)
    return paths


def write_csv(records: Sequence[dict], path: str) -> None:
    """Long format, one row per metric: model, pretrained, dataset, task, metric, value."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "pretrained", "dataset", "task", "metric", "value"])
        for r in records:
            for metric, value in r["metrics"].items():
                writer.writerow([r["model"], r["pretrained"], r["dataset"], r["task"], metric, f"{value:.6g}"])


def table_blocks(records: Sequence[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per task, in first-seen order: (task, header, rows), a row per dataset, a column per metric."""
    blocks: dict[str, tuple[list[str], list[dict]]] = {}
    for r in records:
        metrics, rows = blocks.setdefault(r["task"], ([], []))
        metrics.extend(m for m in r["metrics"] if m not in metrics)
        rows.append(r)
    out = []
    for task, (metrics, rows) in blocks.items():
        body = [[r["dataset"]] + [_format(r["metrics"].get(m)) for m in metrics] for r in rows]
        out.append((task, ["dataset", *metrics], body))
    return out


def format_table(records: Sequence[dict]) -> str:
    """The combined table as aligned plain text, one block per task."""
    lines = []
    for task, header, rows in table_blocks(records):
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines.append(task)
        for row in [header, *rows]:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        lines.append("")
    return "\n".join(lines)


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.0e}"
