"""Image-text methods train ~30 steps end to end on a WebDataset shard written here (not the embedded data),
each evaluated by a config-named retrieval evaluator on a held-out shard; the evaluator's R@k is checked
against a NumPy recomputation from the saved parameters.

By default a representative subset runs (the base CLIP run, uCLIP and ProCLIP stage 1 on these files);
OBJECTIVE_MATRIX=full runs every image-text method (DreamLIP, ALIP, DeGLA and hard negatives with the
texts of each sample's json).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os

import jax
import ml_collections
import numpy as np
import pytest
import real_data as rd

from evaluation.run import restore_params
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.tokenizer import load_tokenizer
from input_pipeline.transforms import normalize_image
from input_pipeline.webdataset import WebDatasetSource
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.validation import validate_config

STEPS, TRAIN_EXAMPLES, HELD_OUT = 30, 48, 24
SIZES, COLOURS = ("small", "large"), ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star")
# Methods that start from a trained CLIP run (the base run here): config.init_from.workdir.
FROM_CLIP = ("clip_continued", "clip_refine", "degla", "uclip", "proclip_stage1")
FULL = (
    "laclip", "siglip", "lit", "dreamlip", "alip", "protoclip", "clip_hard_negatives", "clip_continued",
    "clip_refine", "degla", "uclip", "proclip_stage1", "proclip",
)  # fmt: skip
DEFAULT = ("uclip", "proclip_stage1")


def caption(i: int) -> str:
    """Distinct captions in the shapes vocabulary (so uCLIP's second language translates them)."""
    size, colour = SIZES[i % 2], COLOURS[(i // 2) % len(COLOURS)]
    shape, other = SHAPES[(i // 12) % len(SHAPES)], SHAPES[(i // 48) % len(SHAPES)]
    return f"{size} {colour} {shape} top left, {other} bottom"


def example(i: int) -> dict:
    """A JPEG, its caption and the json texts DreamLIP, ALIP, DeGLA and LaCLIP read."""
    meta = {
        "long_caption": f"{caption(i)}. a {COLOURS[i % 6]} thing. the scene is plain.",
        "raw_caption": f"photo {i} of a {caption(i)}",
        "hard_negatives": [caption(i + d) for d in (1, 2, 7, 13, 25, 49)],  # as many as the shapes data's
        "rewrites": [f"a {caption(i)}", f"{caption(i)} here"],
    }
    return {"key": f"{i:06d}", "jpg": rd.photo(i), "txt": caption(i).encode(), "json": json.dumps(meta).encode()}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    rd.write_shard(folder / "train-000.tar", [example(i) for i in range(TRAIN_EXAMPLES)])
    rd.write_shard(folder / "heldout-000.tar", [example(i) for i in range(1000, 1000 + HELD_OUT)])
    return folder


def tiny(name: str, shards, arg: str | None = None) -> ml_collections.ConfigDict:
    """configs/<name>.py on the train shard, width-32 towers at 16 px, STEPS steps of 16, one evaluator:
    retrieval on the held-out shard."""
    config = importlib.import_module(f"configs.{name}").get_config(arg)
    config.data.update(name="webdataset", path=str(shards / "train-*.tar"), image_size=16, read_threads=0)
    config.model.image.update(width=32, depth=1, heads=2, patch_size=4, conv_stem_depth=0, pool="gap")
    if config.model.text.kind == "clip":  # LiT keeps its pretrained MiniLM text tower
        config.model.text.update(width=32, depth=1, heads=2, max_len=16)
        config.text.vocab_size = 320  # 256 byte-fallback pieces + the characters + a few words
    config.model.embed_dim = 16
    if config.model.head_dim:
        config.model.update(head_dim=16, head_hidden_dim=32)
    config.update(batch_size=16, total_steps=STEPS, log_every_steps=STEPS, eval_every_steps=STEPS)
    config.checkpoint_every_steps = STEPS
    config.optimizer.warmup_steps = 2
    config.eval.update(num_examples=HELD_OUT, batch_size=8)  # 24 = 3 batches: the padded last batch is exercised
    config.evals = ml_collections.ConfigDict(
        {"heldout": dict(type="retrieval", prefix="heldout/", path=str(shards / "heldout-*.tar"))}
    )
    if name == "protoclip":
        config.protoclip.update(episode_steps=5, num_prototypes=8)
    if name == "uclip":
        config.uclip.bank_size = 16  # 2 x 16 of the 48 training examples: image bank and unpaired caption bank
    return config


def numpy_recall(similarity: np.ndarray, k: int) -> float:
    """Fraction of queries (rows) whose match (the diagonal) is among the k best-scoring candidates."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    rank = np.array([int(np.where(order[i] == i)[0][0]) for i in range(len(similarity))])
    return float(np.mean(rank < k))


def check_held_out_retrieval(config, workdir: str, summary: dict) -> None:
    """The evaluator's R@k equal a recomputation from the saved params: decode the held-out shard, embed it
    with the checkpoint's towers, rank in NumPy."""
    tokenizer = load_tokenizer(
        config.text.tokenizer_path or os.path.join(workdir, "tokenizer.model"), config.text.tokenizer
    )
    model = build_model(config, tokenizer.vocab_size)
    params, step = restore_params(config, workdir, model)
    assert step == STEPS
    source = DecodedSource(WebDatasetSource([config.evals.heldout.path.replace("*", "000")]), config.data.image_size)
    records = [source[i] for i in range(len(source))]
    assert [r["caption"] for r in records] == [caption(i) for i in range(1000, 1000 + HELD_OUT)]
    images = normalize_image(np.stack([r["image"] for r in records]))
    tokens = tokenizer.encode([r["caption"] for r in records], config.model.text.max_len)
    out = jax.jit(lambda p: model.apply({"params": p}, images, tokens))(params)
    similarity = np.asarray(out["image_embedding"], np.float64) @ np.asarray(out["text_embedding"], np.float64).T
    got = summary["eval"]
    for k in (1, 5, 10):
        assert got[f"heldout/image_to_text_R@{k}"] == pytest.approx(numpy_recall(similarity, k), abs=1e-9)
        assert got[f"heldout/text_to_image_R@{k}"] == pytest.approx(numpy_recall(similarity.T, k), abs=1e-9)
    assert not any(k.startswith(("zero_shot/", "retrieval/")) for k in got)  # only the named evaluator ran


def train(config, workdir) -> dict:
    validate_config(config)
    summary = train_and_evaluate(config, str(workdir))
    assert summary["step"] == STEPS and math.isfinite(summary["final_loss"])
    return summary


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def base_run(shards, tmp_path_factory):
    """CLIP on the shard: the first method of the matrix and the run the post-pretraining methods start from.
    Returns (workdir, summary, the messages it logged)."""
    workdir = tmp_path_factory.mktemp("clip")
    config = tiny("clip", shards)
    handler, absl_logger = _Messages(), logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.addHandler(handler)
    absl_logger.setLevel(logging.INFO)
    try:
        summary = train(config, workdir)
    finally:
        absl_logger.removeHandler(handler)
        absl_logger.setLevel(level)
    check_held_out_retrieval(config, str(workdir), summary)
    return str(workdir), summary, handler.messages


@pytest.fixture(scope="module")
def stage1_run(base_run, shards, tmp_path_factory):
    """ProCLIP stage 1 from the base run, its embedder the base run's text tower (read from its checkpoint)."""
    workdir = tmp_path_factory.mktemp("proclip_stage1")
    config = tiny("proclip_stage1", shards)
    config.init_from.workdir = config.proclip.embedder_workdir = base_run[0]
    summary = train(config, workdir)
    return str(workdir), config, summary


def train_method(name: str, base_run, shards, workdir: str, request) -> tuple:
    """(config, workdir, summary) of `name` trained on the shard (post-pretraining methods from the base run)."""
    if name == "proclip_stage1":
        workdir, config, summary = request.getfixturevalue("stage1_run")
        return config, workdir, summary
    config = tiny(name, shards)
    if name in FROM_CLIP:
        config.init_from.workdir = base_run[0]
    if name == "proclip":  # stage 2 starts from stage 1
        stage1 = request.getfixturevalue("stage1_run")
        config.init_from.workdir, config.proclip.embedder_workdir = stage1[0], base_run[0]
    return config, workdir, train(config, workdir)


# One test for the default subset, so that pytest-xdist runs the base run once (its fixture is per worker).
GROUPS = [(name,) for name in FULL] if os.environ.get("OBJECTIVE_MATRIX") == "full" else [DEFAULT]


@pytest.mark.parametrize("names", GROUPS, ids="+".join)
def test_methods_train_on_the_shard_and_are_scored_on_the_held_out_shard(names, base_run, shards, tmp_path, request):
    _, base_summary, messages = base_run  # CLIP, checked by the fixture
    said = [m for m in messages if m.startswith("Evaluating ")]
    assert said == [
        f"Evaluating heldout (retrieval): {HELD_OUT} held-out examples of {shards}/heldout-*.tar (webdataset)."
    ]  # once, what the run evaluates on
    for name in names:
        config, workdir, summary = train_method(name, base_run, shards, str(tmp_path / name), request)
        check_held_out_retrieval(config, workdir, summary)
        if name in ("uclip", "proclip_stage1"):  # the CLIP towers stay frozen: the base run's retrieval, exactly
            assert summary["eval"] == base_summary["eval"], name
