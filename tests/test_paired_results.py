"""Paired differences over seeds: the mean, Student's t 95% interval and wins, checked by hand."""

import math

from launch.results import (
    decoder_table,
    paired_cell,
    paired_difference,
    paired_table,
    results_table,
    run_name,
    split_configs,
)


def test_paired_difference_matches_the_closed_form():
    # Differences 1, 2, 3: mean 2, sample sd 1, t(0.975, df 2) = 4.302653 -> half-width 4.302653 / sqrt(3).
    mean, low, high, wins = paired_difference([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    half = 4.302653 / math.sqrt(3)
    assert mean == 2.0 and wins == 3
    assert math.isclose(low, 2 - half, rel_tol=1e-6) and math.isclose(high, 2 + half, rel_tol=1e-6)


def test_an_interval_that_spans_zero_is_marked_not_detected():
    # Differences -1, +2, -1: mean 0, sd sqrt(3), half = 4.302653 * sqrt(3) / sqrt(3).
    assert paired_cell([10.0, 12.0, 9.0], [11.0, 10.0, 10.0]) == "+0.0 [-4.3, +4.3] 1/3 (n.d.)"
    # Five seeds, every difference +1.5 +- 0.5: t(0.975, 4) = 2.776445, sd 0.5, half = 0.6208.
    assert paired_cell([2.0, 1.0, 2.0, 1.0, 1.5], [0.0] * 5) == "+1.5 [+0.9, +2.1] 5/5"
    assert paired_cell([3.0], [1.0]) == "+2.0 1/1 (n.d.)"


def test_paired_table_pairs_runs_of_the_same_seed_and_skips_unfinished_ones():
    def summary(zero_shot):
        return {"eval": {"zero_shot/shape_colour": zero_shot}}

    results = {
        "clip": [summary(0.50), summary(0.60), summary(0.70)],
        "laclip": [summary(0.55), None, summary(0.80)],  # seed 1 did not finish: pairs are seeds 0 and 2
    }
    table = paired_table(results, "clip", [0, 1, 2])
    row = next(line for line in table.splitlines() if line.startswith("| laclip"))
    # Differences +5 and +10 points: mean 7.5, sd 3.5355, t(0.975, 1) = 12.7062 -> half 31.77.
    assert row.split(" | ")[1] == "+7.5 [-24.3, +39.3] 2/2 (n.d.)"
    assert "| clip |" not in table


def test_paired_table_has_the_paraphrase_recall_at_10_and_the_modality_gap():
    def summary(recall, gap):
        return {"eval": {"retrieval_rewrites/image_to_text_R@10": recall, "geometry/modality_gap": gap}}

    results = {"clip": [summary(0.2, 0.2), summary(0.3, 0.2)], "alip": [summary(0.1, 0.5), summary(0.1, 0.6)]}
    header, _, row = (line.strip("| ").split(" | ") for line in paired_table(results, "clip", [0, 1]).splitlines()[1:])
    cells = dict(zip(header, row, strict=True))
    # Recall in points: differences -10, -20 (mean -15, sd 7.071, t(0.975, 1) = 12.7062 -> half 63.53); the gap
    # unscaled to 3 decimals: +0.3, +0.4 (mean 0.35, sd 0.0707 -> half 0.635).
    assert cells["I→T R@10 (paraphrases)"] == "-15.0 [-78.5, +48.5] 0/2 (n.d.)"
    assert cells["modality gap"] == "+0.350 [-0.285, +0.985] 2/2 (n.d.)"


def test_configs_split_at_paths_and_their_arguments_name_the_runs():
    configs = split_configs(
        "configs/simcse.py:mode=unsup,text=minilm,configs/ccp.py,configs/multicsr.py:threshold=1.01"
    )
    assert configs == [
        "configs/simcse.py:mode=unsup,text=minilm",
        "configs/ccp.py",
        "configs/multicsr.py:threshold=1.01",
    ]
    assert [run_name(c) for c in configs] == ["simcse_mode=unsup_text=minilm", "ccp", "multicsr_threshold=1.01"]


def test_text_runs_get_the_sts_columns_and_image_runs_keep_theirs():
    def text(sts):
        return {"eval": {"sts/avg": sts, "sts_calibrated/avg": sts + 1.0}, "wall_time_s": 60.0}

    results = {"unsup": [text(30.0), text(40.0)], "sup": [text(70.0), text(90.0)]}  # Spearman x 100, as reported
    header = results_table(results).splitlines()[0]
    assert "STS" in header and "STS calibrated" in header and "zero-shot shape" not in header
    table = paired_table(results, "unsup", [0, 1])
    assert table.splitlines()[1] == "| config − unsup | STS | STS calibrated |"
    # Differences +40 and +50: mean 45, sd 7.071, t(0.975, 1) = 12.7062 -> half 63.53.
    assert table.splitlines()[-1] == "| sup | +45.0 [-18.5, +108.5] 2/2 (n.d.) | +45.0 [-18.5, +108.5] 2/2 (n.d.) |"
    image = {"clip": [{"eval": {"zero_shot/shape_colour": 0.5}, "wall_time_s": 60.0}]}
    assert "STS" not in results_table(image) and "zero-shot shape" in results_table(image)


def test_decoder_table_pairs_decoders_within_each_run():
    def summary(greedy, cad, adacad):
        e = {}
        for split, shift in (("conflict", 0.0), ("agreement", 50.0)):
            for name, value in (("greedy", greedy), ("cad", cad), ("adacad", adacad)):
                e[f"conflict_qa/{split}/{name}"] = value + shift
        for name, value in (("greedy", greedy), ("cad", cad), ("adacad", adacad)):
            e[f"conflict_qa/mixed/{name}"] = value + 25.0
        return {"eval": e}

    results = {"lm": [summary(2, 30, 4), summary(4, 20, 4), None]}  # the third seed did not finish
    table = decoder_table(results, [0, 1, 2])
    row = next(line for line in table.splitlines() if line.startswith("| lm |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    # CAD - greedy on conflict: differences 28 and 16, mean 22, t(1) interval 22 -/+ 12.706 * 6
    assert cells[0] == paired_cell([30, 20], [2, 4]) == "+22.0 [-54.2, +98.2] 2/2 (n.d.)"
    assert cells[6] == paired_cell([29, 29], [55, 45])  # AdaCAD - CAD, mixed
    assert cells[-1] == "—"  # no generation metrics in these summaries
    assert decoder_table({"clip": [{"eval": {"zero_shot/shape": 0.5}}]}, [0]) == ""


def test_paired_curves_pair_each_step_and_find_when_the_baseline_final_value_is_reached(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from benchmarks.paired_curves import curve_tables, eval_curve, first_step_reaching

    # Losses at steps 10, 20, 30: the baseline ends at 2.0 (seed 0) and 3.0 (seed 1).
    base = [{10: 4.0, 20: 3.0, 30: 2.0}, {10: 5.0, 20: 4.0, 30: 3.0}]
    fast = [{10: 3.0, 20: 2.0, 30: 1.5}, {10: 4.0, 20: 2.5, 30: 2.5}]
    assert first_step_reaching(fast[0], 2.0, lower_is_better=True) == 20
    assert first_step_reaching(fast[1], 3.0, lower_is_better=True) == 20
    assert first_step_reaching(base[0], 1.0, lower_is_better=True) is None
    assert first_step_reaching({10: 0.2, 20: 0.9}, 0.5, lower_is_better=False) == 20
    table = curve_tables({"mle": base, "salt": fast}, lower_is_better=True, decimals=1)
    # Step 10: differences -1, -1 (sd 0: the interval is the point); step 30: -0.5, -0.5.
    assert "| 10 | 4.5 | -1.0 [-1.0, -1.0] 0/2 |" in table
    assert "| 30 | 2.5 | -0.5 [-0.5, -0.5] 0/2 |" in table
    assert "| mle | 30, 30 | 2/2 |" in table and "| salt | 20, 20 | 2/2 |" in table

    # From metrics.jsonl files laid out as compare_methods leaves them; seed 1 of "salt" is missing.
    for name, curves in (("salt_kd=none", base), ("salt", fast[:1])):
        for seed, curve in enumerate(curves):
            run = tmp_path / f"{name}_seed{seed}"
            run.mkdir()
            rows = [{"step": s, "eval/language/token_loss": v} for s, v in curve.items()] + [{"step": 30, "train/x": 1}]
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert eval_curve(str(tmp_path / "salt_seed0"), "language/token_loss") == fast[0]
    out = subprocess.run(
        [sys.executable, "benchmarks/paired_curves.py", "--configs=configs/salt.py:kd=none,configs/salt.py",
         "--seeds=0,1", f"--workdir={tmp_path}", "--metric=language/token_loss", "--lower_is_better"],
        capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    ).stdout  # fmt: skip
    assert "paired over seeds 0:" in out and "| salt | 20 | 1/1 |" in out


def test_language_runs_get_only_the_columns_they_were_evaluated_on():
    runs = {"lm": [{"eval": {"language/perplexity": 1.5, "language/token_loss": 0.4}, "wall_time_s": 60.0}]}
    header = results_table(runs).splitlines()[0]
    assert header == "| config | seeds | minutes | perplexity | held-out NLL |"
    runs["lm"][0]["eval"]["language/greedy/diversity"] = 70.0
    assert "greedy diversity" in results_table(runs).splitlines()[0]


def test_dialog_runs_get_the_probe_columns():
    def dialog(one_shot):
        metrics = {"dialog/intent_1shot": one_shot, "dialog/intent_5shot": 90.0, "dialog/intent_probe": 99.0,
                   "dialog/slot_f1": 60.0}  # fmt: skip
        return {"eval": metrics, "wall_time_s": 60.0}

    results = {"self": [dialog(70.0), dialog(72.0)], "soft": [dialog(80.0), dialog(86.0)]}
    header = results_table(results).splitlines()[0]
    assert header == "| config | seeds | minutes | intent 1-shot | intent 5-shot | intent probe | slot F1 |"
    # 1-shot differences +10 and +14: mean 12, sd 2.828, t(0.975, 1) = 12.7062 -> half 25.41.
    row = paired_table(results, "self", [0, 1]).splitlines()[-1]
    assert row.startswith("| soft | +12.0 [-13.4, +37.4] 2/2 (n.d.) | +0.0")
