"""CLIP_benchmark's JSON layout and file names, the combined table and the CSV."""

import csv
import json
import os

from evaluation import results
from evaluation.suite import Result


def test_one_json_per_result_in_clip_benchmark_layout(tmp_path):
    metrics = {"acc1": 0.5, "acc5": 0.875, "mean_per_class_recall": 0.25}
    record = results.benchmark_record(Result("shapes/shape", "zeroshot_classification", metrics), "ViT-x", "run-step3")
    (path,) = results.write_records([record], str(tmp_path))
    assert os.path.basename(path) == "shapes_shape_run-step3_ViT-x_en_zeroshot_classification.json"
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert list(data) == ["dataset", "model", "pretrained", "task", "metrics", "language"]
    assert data == {
        "dataset": "shapes/shape",
        "model": "ViT-x",
        "pretrained": "run-step3",
        "task": "zeroshot_classification",
        "metrics": metrics,
        "language": "en",
    }


def test_combined_table_has_a_block_per_task_and_a_row_per_dataset(tmp_path):
    records = [
        results.benchmark_record(Result("a", "linear_probe", {"acc1": 0.5, "l2": 1e-5}), "m", "p"),
        results.benchmark_record(Result("b", "linear_probe", {"acc1": 0.25, "acc5": 1.0, "l2": 0.01}), "m", "p"),
        results.benchmark_record(Result("a", "few_shot", {"1shot_acc1": 0.125}), "m", "p"),
    ]
    lines = results.format_table(records).splitlines()
    assert lines[0] == "linear_probe"
    assert lines[1].split() == ["dataset", "acc1", "l2", "acc5"]
    assert lines[2].split() == ["a", "0.5000", "1e-05", "-"]  # a metric a dataset lacks shows as "-"
    assert lines[3].split() == ["b", "0.2500", "0.0100", "1.0000"]
    assert lines[5:7] == ["few_shot", "  dataset  1shot_acc1"]
    results.write_csv(records, str(tmp_path / "r.csv"))
    with open(tmp_path / "r.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 + 3 + 1
    assert rows[0] == {"model": "m", "pretrained": "p", "dataset": "a", "task": "linear_probe", "metric": "acc1",
                       "value": "0.5"}  # fmt: skip
