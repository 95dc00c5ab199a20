"""Final metrics of finished runs, read from their summary.json, as one markdown table."""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np
import scipy.stats

from input_pipeline.child_text import PHENOMENA

# Column label -> (key in summary.json's "eval" dict or at its top level, scale, decimals).
COLUMNS = {
    "zero-shot shape+colour": ("zero_shot/shape_colour", 100, 1),
    "zero-shot shape": ("zero_shot/shape", 100, 1),
    "zero-shot colour": ("zero_shot/colour", 100, 1),
    "I→T R@1": ("retrieval/image_to_text_R@1", 100, 1),
    "T→I R@1": ("retrieval/text_to_image_R@1", 100, 1),
    "I→T R@1 (paraphrases)": ("retrieval_rewrites/image_to_text_R@1", 100, 1),
    "T→I R@1 (paraphrases)": ("retrieval_rewrites/text_to_image_R@1", 100, 1),
    "I→T R@10 (paraphrases)": ("retrieval_rewrites/image_to_text_R@10", 100, 1),
    "compositional (mean)": ("compositional/mean", 100, 1),
    "binding (mean)": ("binding/mean", 100, 1),
    "modality gap": ("geometry/modality_gap", 1, 3),
}
# Text-only runs (SimCSE, MultiCSR, CCP): the STS evaluator's Spearman x 100 (as it reports it), averaged over its sets.
TEXT_COLUMNS = {
    "STS": ("sts/avg", 1, 1),
    "STS calibrated": ("sts_calibrated/avg", 1, 1),
}
# Language-model runs (evaluation/language_eval.py): perplexity, what each decoding generates, conflict QA.
LANGUAGE_COLUMNS = {
    "perplexity": ("language/perplexity", 1, 3),
    "held-out NLL": ("language/token_loss", 1, 4),
    **{
        f"{strategy} {metric}": (f"language/{strategy}/{metric}", 1, 3 if metric == "coherence" else 1)
        for strategy in ("greedy", "beam", "nucleus", "contrastive")
        for metric in ("rep-4", "diversity", "coherence")
    },
    **{
        f"QA {split} {name}": (f"conflict_qa/{split}/{key}", 1, 1)
        for split in ("conflict", "agreement")
        for name, key in (("greedy", "greedy"), ("CAD", "cad"), ("AdaCAD", "adacad"))
    },
    "QA closed book": ("conflict_qa/closed_book", 1, 1),
}
# Captioners (LiMBeR, CLOSE; evaluation/captioning_eval.py): words right in captions of held-out images, CLIP-S,
# the same words from the captions' own text embeddings.
CAPTION_COLUMNS = {
    "caption colour+shape": ("captioning/colour_shape", 1, 1),
    "caption colour": ("captioning/colour", 1, 1),
    "caption shape": ("captioning/shape", 1, 1),
    "CLIP-S": ("captioning/clip_score", 1, 1),
    "from text: colour+shape": ("captioning/text_colour_shape", 1, 1),
}
# Dialog encoders (SPACE-2; evaluation/dialog_eval.py): intent and slot probes on held-out commands, in percent.
DIALOG_COLUMNS = {
    "intent 1-shot": ("dialog/intent_1shot", 1, 1),
    "intent 5-shot": ("dialog/intent_5shot", 1, 1),
    "intent probe": ("dialog/intent_probe", 1, 1),
    "slot F1": ("dialog/slot_f1", 1, 1),
}
# PHF runs (evaluation/preference_eval.py): the undesirable word's rate in samples, in percent; aligned text's loss.
PREFERENCE_COLUMNS = {
    "misaligned sentences %": ("preference/misaligned_rate", 1, 2),
    "misaligned samples %": ("preference/misaligned_samples", 1, 2),
    "adversarial %": ("preference/adversarial_rate", 1, 2),
    "aligned NLL": ("preference/aligned_loss", 1, 4),
    "misaligned NLL": ("preference/misaligned_loss", 1, 4),
}
# 1.5-Pints runs (evaluation/fact_probe.py): facts ranked first, in percent; the truth's log-prob; clean text's loss.
FACT_PROBE_COLUMNS = {
    "fact accuracy %": ("fact_probe/accuracy", 1, 1),
    "truth log-prob": ("fact_probe/true_log_prob", 1, 3),
    "clean NLL": ("fact_probe/clean_loss", 1, 4),
}
# CLIMB runs (evaluation/minimal_pairs.py): minimal pairs judged right, in percent, and per phenomenon;
# pseudo-perplexity.
MINIMAL_PAIRS_COLUMNS = {
    "pairs %": ("minimal_pairs/accuracy", 1, 1),
    **{f"{p.replace('_', ' ')} %": (f"minimal_pairs/{p}", 1, 1) for p in PHENOMENA},
    "pseudo-perplexity": ("minimal_pairs/pseudo_perplexity", 1, 3),
}
# PCP runs (evaluation/prompt_eval.py): held-out judgements right at the prompt's slot, in percent, and per phenomenon.
PROMPT_COLUMNS = {
    "judgements %": ("prompt/accuracy", 1, 1),
    **{f"{p.replace('_', ' ')} judged %": (f"prompt/{p}", 1, 1) for p in PHENOMENA},
}
# COCONUT runs (evaluation/incremental_eval.py): held-out images of the classes seen so far classified right, in
# percent, over all of them and over the earlier experiences'.
INCREMENTAL_COLUMNS = {"seen classes %": ("incremental/accuracy", 1, 1), "earlier classes %": ("incremental/old", 1, 1)}
# MEND runs (evaluation/in_context_eval.py): held-out in-context tasks answered right, in percent, from MEND's
# vectors, from the demonstrations and from nothing, how often MEND chooses as in-context learning does, and the
# demonstrations' most frequent output (answering without binding outputs to inputs).
IN_CONTEXT_COLUMNS = {
    "MEND %": ("in_context/mend", 1, 1),
    "in-context %": ("in_context/full", 1, 1),
    "zero-shot %": ("in_context/zero_shot", 1, 1),
    "agreement %": ("in_context/agreement", 1, 1),
    "frequent output %": ("in_context/frequent_output", 1, 1),
}
# SuperEdit runs (evaluation/edit_eval.py): held-out edits right, in percent, overall, by kind and with a wrong
# instruction, the changed pixels' IoU, and the share of held-out pairs whose wrong instruction predicts the noise
# worse than the right one.
EDIT_COLUMNS = {
    "edits right %": ("edits/accuracy", 1, 1),
    "recolour %": ("edits/accuracy_recolour", 1, 1),
    "move %": ("edits/accuracy_move", 1, 1),
    "add %": ("edits/accuracy_add", 1, 1),
    "IoU %": ("edits/iou", 1, 1),
    "kept %": ("edits/kept", 1, 1),
    "wrong-instruction edits %": ("edits/wrong_instruction_accuracy", 1, 1),
    "prefers right %": ("edits/preference", 1, 1),
}
LOSS_COLUMN = {"final loss": ("final_loss", 1, 3)}


def split_configs(configs: str) -> list[str]:
    """'a.py:x=1,y=2,b.py' -> ['a.py:x=1,y=2', 'b.py']: a comma starts a new config only before a .py path."""
    return re.split(r",(?=[^,=:]*\.py)", configs)


def run_name(config: str) -> str:
    """A run's name from its config argument: configs/simcse.py:mode=sup,text=minilm -> simcse_mode=sup_text=minilm."""
    path, _, arguments = config.partition(":")
    stem = os.path.splitext(os.path.basename(path))[0]
    return f"{stem}_{arguments.replace(',', '_')}" if arguments else stem


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


def _task_columns(results: dict[str, list[dict]]) -> dict:
    """The image columns, the text ones, or both, or a language, captioning, dialog, PHF, 1.5-Pints, CLIMB, PCP,
    COCONUT, MEND or SuperEdit run's: those of the tasks the runs were evaluated on."""
    keys = {key for summaries in results.values() for s in summaries if s for key in s["eval"]}
    has = lambda columns: any(key in keys for key, _, _ in columns.values())  # noqa: E731
    if has(LANGUAGE_COLUMNS):  # only the evaluations the runs made (a SALT run measures perplexity alone)
        return {name: column for name, column in LANGUAGE_COLUMNS.items() if column[0] in keys}
    if has(CAPTION_COLUMNS):
        return CAPTION_COLUMNS
    if has(DIALOG_COLUMNS):
        return DIALOG_COLUMNS
    if has(PREFERENCE_COLUMNS):
        return PREFERENCE_COLUMNS
    if has(FACT_PROBE_COLUMNS):
        return FACT_PROBE_COLUMNS
    if has(MINIMAL_PAIRS_COLUMNS):
        return MINIMAL_PAIRS_COLUMNS
    if has(PROMPT_COLUMNS):
        return PROMPT_COLUMNS
    if has(INCREMENTAL_COLUMNS):
        return INCREMENTAL_COLUMNS
    if has(EDIT_COLUMNS):
        return EDIT_COLUMNS
    if has(IN_CONTEXT_COLUMNS):  # only those the runs made (a language model alone has no MEND columns)
        return {name: column for name, column in IN_CONTEXT_COLUMNS.items() if column[0] in keys}
    text = has(TEXT_COLUMNS)
    return {**(COLUMNS if has(COLUMNS) or not text else {}), **(TEXT_COLUMNS if text else {})}


def results_table(results: dict[str, list[dict]], name_header: str = "config", with_loss: bool = False) -> str:
    """A markdown table with one row per name: mean ± sample standard deviation over its summaries.

    results: name -> summaries (dicts of summary.json) of that name's runs, e.g. one per seed. A metric
    missing from a run is left out of that cell's mean; a cell with no value shows "—".
    """
    columns = {**_task_columns(results), **(LOSS_COLUMN if with_loss else {})}
    lines = [f"| {name_header} | seeds | minutes | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 3)]
    for name, summaries in results.items():
        cells = [mean_std_cell(_values(summaries, key, scale), decimals) for key, scale, decimals in columns.values()]
        minutes = np.mean([s["wall_time_s"] for s in summaries]) / 60
        lines.append(f"| {name} | {len(summaries)} | {minutes:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# Columns of the paired table: the headline metrics of the shapes evaluation (docs/results.md's paired tables).
PAIRED_COLUMNS = (
    "zero-shot shape+colour",
    "zero-shot shape",
    "I→T R@1",
    "T→I R@1",
    "I→T R@1 (paraphrases)",
    "I→T R@10 (paraphrases)",
    "binding (mean)",
    "modality gap",
    "STS",
    "STS calibrated",
    *LANGUAGE_COLUMNS,
    *CAPTION_COLUMNS,
    *DIALOG_COLUMNS,
    *PREFERENCE_COLUMNS,
    *FACT_PROBE_COLUMNS,
    *MINIMAL_PAIRS_COLUMNS,
    *PROMPT_COLUMNS,
    *INCREMENTAL_COLUMNS,
    *IN_CONTEXT_COLUMNS,
    *EDIT_COLUMNS,
)


def paired_difference(method: list[float], baseline: list[float]) -> tuple[float, float, float, int]:
    """(mean difference, 95% CI low, high, seeds where the method is higher) of paired per-seed values.

    The interval is Student's t over the per-seed differences (df = seeds - 1): with 3-5 seeds a
    bootstrap over seeds cannot reach the tails, and t is exact for normal differences. One seed
    gives an unbounded interval (nan, nan).
    """
    diffs = np.asarray(method, float) - np.asarray(baseline, float)
    mean = float(np.mean(diffs))
    wins = int(np.sum(diffs > 0))
    if len(diffs) < 2:
        return mean, float("nan"), float("nan"), wins
    half = float(scipy.stats.t.ppf(0.975, len(diffs) - 1) * np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
    return mean, mean - half, mean + half, wins


def paired_cell(method: list[float], baseline: list[float], decimals: int = 1) -> str:
    """ "+d [lo, hi] w/n": the paired difference, its 95% CI and the wins; '(n.d.)' when the CI spans 0."""
    if not method or len(method) != len(baseline):
        return "—"
    mean, low, high, wins = paired_difference(method, baseline)
    interval = f" [{low:+.{decimals}f}, {high:+.{decimals}f}]" if np.isfinite(low) else ""
    undetected = " (n.d.)" if not (low > 0 or high < 0) else ""
    return f"{mean:+.{decimals}f}{interval} {wins}/{len(method)}{undetected}"


# Decoders compared within each language-model run (the same model): (label, metric key, baseline key, decimals).
DECODER_PAIRS = (
    tuple(
        (f"{decoder} − greedy, QA {split}", f"conflict_qa/{split}/{key}", f"conflict_qa/{split}/greedy", 1)
        for split in ("conflict", "agreement", "mixed")
        for decoder, key in (("CAD", "cad"), ("AdaCAD", "adacad"))
    )
    + (("AdaCAD − CAD, QA mixed", "conflict_qa/mixed/adacad", "conflict_qa/mixed/cad", 1),)
    + tuple(
        (f"{strategy} − greedy, {metric}", f"language/{strategy}/{metric}", f"language/greedy/{metric}", decimals)
        for strategy in ("beam", "nucleus", "contrastive")
        for metric, decimals in (("diversity", 1), ("coherence", 3))
    )
)


def decoder_table(results: dict[str, list[dict]], seeds: list[int]) -> str:
    """For language-model runs: each decoder minus another on the same runs (paired over seeds), per config;
    '' when no run has knowledge-conflict metrics."""
    if not any(s and "conflict_qa/mixed/greedy" in s["eval"] for summaries in results.values() for s in summaries):
        return ""
    labels = [label for label, _, _, _ in DECODER_PAIRS]
    lines = ["| config | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for name, summaries in results.items():
        done = [s["eval"] for s in summaries if s and "conflict_qa/mixed/greedy" in s["eval"]]
        cells = [
            paired_cell([e[key] for e in done if key in e], [e[base] for e in done if key in e], decimals)
            for _, key, base, decimals in DECODER_PAIRS
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"Decoders paired within runs, seeds {','.join(map(str, seeds))}:\n" + "\n".join(lines)


def paired_table(results: dict[str, list[dict]], baseline: str, seeds: list[int]) -> str:
    """Each method minus `baseline` on the same seeds: mean difference [95% CI] and wins/seeds per metric.

    results: name -> summaries in the order of `seeds` (None for a run that did not finish; such a
    seed is left out of that pair). "(n.d.)": the interval spans zero, the effect is not detected.
    """
    available = _task_columns(results)
    columns = [column for column in PAIRED_COLUMNS if column in available]
    lines = [f"| config − {baseline} | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, summaries in results.items():
        if name == baseline:
            continue
        cells = []
        for column in columns:
            key, scale, decimals = available[column]
            pairs = [
                (scale * m["eval"][key], scale * b["eval"][key])
                for m, b in zip(summaries, results[baseline], strict=True)
                if m and b and key in m["eval"] and key in b["eval"]
            ]
            cells.append(paired_cell([m for m, _ in pairs], [b for _, b in pairs], decimals))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"Paired over seeds {','.join(map(str, seeds))}:\n" + "\n".join(lines)
