"""`main.py --mode=eval` on a tiny real run: CLIP_benchmark JSONs, the combined table, and a report
whose index.html shows every plot in a real headless browser (Chromium; skipped where it is absent)."""

import glob
import html.parser
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A run small enough to train in seconds; eval must be given the same model settings.
MODEL = [
    "--config.model.image.depth=1",
    "--config.model.text.depth=1",
    "--config.model.image.width=32",
    "--config.model.text.width=32",
    "--config.model.embed_dim=32",
]
DATA = ["--config.data.cache_dir=", "--config.eval.num_examples=32", "--config.eval.batch_size=64"]
TRAIN = [
    "--config.total_steps=6",
    "--config.batch_size=32",
    "--config.data.train_size=200",
    "--config.log_every_steps=2",
    "--config.eval_every_steps=3",
    "--config.checkpoint_every_steps=6",
    "--config.optimizer.warmup_steps=2",
]


def run_main(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    # LLVM at -O0: compiling costs these few-step runs more than running them.
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0")
    return subprocess.run(
        [sys.executable, "main.py", "--config=configs/clip.py", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    trained = run_main(f"--workdir={workdir}", *MODEL, *DATA, *TRAIN)
    assert trained.returncode == 0, trained.stderr[-3000:]
    rng = np.random.default_rng(0)
    user_file = workdir / "my_images.npz"
    np.savez(user_file, images=rng.integers(0, 256, (40, 20, 20, 3), dtype=np.uint8), labels=np.arange(40) % 4,
             captions=np.array([f"picture number {i}" for i in range(40)]))  # fmt: skip
    result = run_main(f"--workdir={workdir}", *MODEL, *DATA, "--mode=eval", f"--eval_data={user_file}")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_eval_writes_one_clip_benchmark_json_per_dataset_and_task(evaluated):
    workdir, result = evaluated
    output = workdir / "eval" / "step_6"
    records = [json.loads(open(p).read()) for p in sorted(glob.glob(str(output / "results" / "*.json")))]
    pairs = {(r["dataset"], r["task"]) for r in records}
    labelled = ("shapes/shape", "shapes/colour", "shapes/shape_colour", "digits", "my_images")
    for dataset in labelled:
        for task in ("zeroshot_classification", "linear_probe", "few_shot"):
            assert (dataset, task) in pairs
    for task in ("zeroshot_retrieval", "embedding_geometry", "compositionality", "binding"):
        assert ("shapes", task) in pairs
    assert {("my_images", "zeroshot_retrieval"), ("my_images", "embedding_geometry")} <= pairs  # it has captions
    assert ("shapes", "shapes_zero_shot") in pairs  # the trainer's evaluators (config.evals), one record each
    assert len(records) == len(pairs) == 5 * 3 + 4 + 2 + 1
    for r in records:
        assert list(r) == ["dataset", "model", "pretrained", "task", "metrics", "language"]
        assert r["pretrained"] == f"{workdir.name}-step6" and r["language"] == "en"
    by_key = {(r["dataset"], r["task"]): r["metrics"] for r in records}
    zero_shot = by_key[("shapes/shape", "zeroshot_classification")]
    assert set(zero_shot) == {"acc1", "acc5", "mean_per_class_recall"}
    # The trainer's own evaluator scored the same 32 images with the same prompts at step 6.
    summary = json.loads((workdir / "summary.json").read_text())
    assert zero_shot["acc1"] == pytest.approx(summary["eval"]["zero_shot/shape"], abs=1 / 32 + 1e-9)
    # --mode=eval runs the trainer's evaluators themselves: the same numbers as the training run's final eval.
    assert by_key[("shapes", "shapes_zero_shot")] == pytest.approx(summary["eval"], rel=1e-6, abs=1e-9)
    # ... and the suite's binding task scores the same 16 images per kind, under the same metric names.
    trainer_binding = {k: v for k, v in summary["eval"].items() if k.startswith(("binding/", "binding_rewrites/"))}
    assert by_key[("shapes", "binding")] == pytest.approx(trainer_binding, abs=1 / 16 + 1e-9)
    assert set(by_key[("shapes", "compositionality")]) == {"colour", "shape", "size", "position", "swap", "add", "mean"}
    assert "image_retrieval_recall@5" in by_key[("shapes", "zeroshot_retrieval")]
    table = (output / "results.txt").read_text()
    assert table in result.stdout and "compositionality" in table and "my_images" in table
    assert (output / "results.csv").read_text().startswith("model,pretrained,dataset,task,metric,value")


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_report_plots_are_pngs_that_index_html_shows(evaluated):
    workdir, result = evaluated
    report = workdir / "eval" / "step_6" / "report"
    assert f"Report: {report / 'index.html'}" in result.stdout
    page = _Page()
    page.feed((report / "index.html").read_text())
    expected = {"training_curves.png", "shapes_modality_gap.png", "shapes_text_to_image.png",
                "shapes_image_to_text.png", "shapes_compositionality.png"}  # fmt: skip
    assert expected <= set(page.images)
    for name in page.images:  # relative paths that exist, each a real PNG
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_report_renders_in_headless_chromium(evaluated):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    workdir, _ = evaluated
    index = workdir / "eval" / "step_6" / "report" / "index.html"
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         "--virtual-time-budget=10000", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    page = _Page()
    page.feed(dom)
    # The page's own script counts images that decoded (naturalWidth > 0) once the page loaded.
    assert f'data-images-loaded="{len(page.images)}"' in dom and f'data-images-total="{len(page.images)}"' in dom
    assert f"All {len(page.images)} figures loaded." in dom


def test_eval_of_a_workdir_without_checkpoint_is_one_sentence(tmp_path):
    result = run_main(f"--workdir={tmp_path}", "--mode=eval", timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"error: {tmp_path} holds no checkpoint to evaluate; train first with the same command" in result.stderr


def test_a_model_setting_that_differs_from_the_run_is_named(tmp_path):
    from configs import clip
    from configs.errors import ConfigError
    from evaluation.run import check_config_matches_run

    config = clip.get_config()
    depth = config.model.image.depth
    trained = config.model.to_dict()
    trained["image"] = dict(trained["image"], depth=depth + 1)
    (tmp_path / "run_info.json").write_text(json.dumps({"config": {"model": trained}}, default=str))
    message = rf"config\.model\.image\.depth is {depth} but the run in .* trained with {depth + 1}"
    with pytest.raises(ConfigError, match=message):
        check_config_matches_run(config, str(tmp_path))
    (tmp_path / "run_info.json").write_text(json.dumps({"config": {"model": config.model.to_dict()}}, default=str))
    check_config_matches_run(config, str(tmp_path))
    # How the step ran (remat, scan, attention kernel) is not the model: another choice evaluates the run.
    config.model.update(remat=True, scan_layers=True, attention="xla")
    check_config_matches_run(config, str(tmp_path))
