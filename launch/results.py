"""Final metrics of finished runs, read from their summary.json, as one markdown table."""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

# Column label -> (key in summary.json's "eval" dict or at its top level, scale, decimals).
COLUMNS = {
    "zero-shot shape+colour": ("zero_shot/shape_colour", 100, 1),
    "zero-shot shape": ("zero_shot/shape", 100, 1),
    "zero-shot colour": ("zero_shot/colour", 100, 1),
    "I→T R@1": ("retrieval/image_to_text_R@1", 100, 1),
    "T→I R@1": ("retrieval/text_to_image_R@1", 100, 1),
    "I→T R@1 (paraphrases)": ("retrieval_rewrites/image_to_text_R@1", 100, 1),
    "T→I R@1 (paraphrases)": ("retrieval_rewrites/text_to_image_R@1", 100, 1),
    "compositional (mean)": ("compositional/mean", 100, 1),
    "modality gap": ("geometry/modality_gap", 1, 3),
}
LOSS_COLUMN = {"final loss": ("final_loss", 1, 3)}


def runs_by_name(patterns: str) -> dict[str, list[str]]:
    """Run folders matching comma-separated globs, grouped by name without its `_seed<N>` suffix.

    Raises SystemExit with one sentence when nothing matches."""
    workdirs = sorted(w for pattern in patterns.split(",") for w in glob.glob(pattern))
    if not workdirs:
        raise SystemExit(f"error: no run folder matches {patterns!r}; pass the --workdir of trained runs.")
    groups: dict[str, list[str]] = {}
    for workdir in workdirs:
        groups.setdefault(re.sub(r"_seed\d+$", "", os.path.basename(os.path.normpath(workdir))), []).append(workdir)
    return groups


def read_summary(workdir: str) -> dict | None:
    """The run's summary.json (written by training/loop.py at the end), or None if there is none yet."""
    path = os.path.join(workdir, "summary.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:  # a run killed while writing it: treat as unfinished
        return None


def _values(summaries: list[dict], key: str, scale: float) -> list[float]:
    found = [s["eval"].get(key, s.get(key)) for s in summaries]
    return [scale * v for v in found if v is not None]


def mean_std_cell(values: list[float], decimals: int) -> str:
    """ "mean ± sample standard deviation" (ddof 1) of `values`, the value alone for one, "—" for none."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{np.mean(values):.{decimals}f} ± {np.std(values, ddof=1):.{decimals}f}"


def results_table(results: dict[str, list[dict]], name_header: str = "config", with_loss: bool = False) -> str:
    """A markdown table with one row per name: mean ± sample standard deviation over its summaries.

    results: name -> summaries (dicts of summary.json) of that name's runs, e.g. one per seed. A metric
    missing from a run is left out of that cell's mean; a cell with no value shows "—".
    """
    columns = {**COLUMNS, **(LOSS_COLUMN if with_loss else {})}
    lines = [f"| {name_header} | seeds | minutes | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 3)]
    for name, summaries in results.items():
        cells = [mean_std_cell(_values(summaries, key, scale), decimals) for key, scale, decimals in columns.values()]
        minutes = np.mean([s["wall_time_s"] for s in summaries]) / 60
        lines.append(f"| {name} | {len(summaries)} | {minutes:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
