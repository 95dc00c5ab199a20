"""Each post-pretraining config trains a few steps from a tiny CLIP run's checkpoint (training/loop.py)."""

import importlib
import json

import numpy as np
import pytest

from training.loop import train_and_evaluate
from training.validation import validate_config


def tiny(config, steps: int):
    """Width-32 towers, 16 px images, batch 16, a few steps, no cache, a small evaluation."""
    config.model.image.update(width=32, depth=1, heads=2, patch_size=4, conv_stem_depth=0, pool="gap")
    config.model.text.update(width=32, depth=1, heads=2, max_len=16)
    config.model.embed_dim = 16
    config.data.update(image_size=16, train_size=64, cache_dir="")
    config.eval.update(num_examples=32, batch_size=32)
    config.update(batch_size=16, total_steps=steps, log_every_steps=steps, eval_every_steps=steps)
    config.checkpoint_every_steps = steps
    config.optimizer.warmup_steps = 1
    return config


def get_config(name: str, arg: str | None = None):
    return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("clip_base"))
    train_and_evaluate(tiny(get_config("clip"), 2), workdir)
    return workdir


@pytest.mark.parametrize(
    "name,metric",
    [("clip_continued", "i2t_accuracy"), ("clip_refine", "rafa_loss"), ("degla", "tgc_loss")],
)
def test_post_pretraining_trains_from_the_checkpoint(base_run, tmp_path, name, metric):
    config = tiny(get_config(name), 2)
    config.init_from.workdir = base_run
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 2 and np.isfinite(summary["final_loss"])
    assert {"zero_shot/shape_colour", "compositional/mean", "geometry/modality_gap"} <= set(summary["eval"])
    records = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    train = next(r for r in records if "train/loss" in r)
    assert np.isfinite(train[f"train/{metric}"]), train


def test_uclip_trains_only_its_heads_and_retrieves_from_second_language_text(base_run, tmp_path):
    from evaluation.run import restore_params
    from evaluation.second_language import second_language_retrieval
    from input_pipeline.tokenizer import load_tokenizer
    from models.two_tower import build_model

    config = tiny(get_config("uclip"), 2)
    config.init_from.workdir = base_run
    config.uclip.bank_size = 32
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(summary["final_loss"])
    with open(f"{base_run}/summary.json", encoding="utf-8") as f:
        base_eval = json.load(f)["eval"]
    # The shapes evaluator scores the CLIP towers, which uCLIP leaves exactly as it loaded them; its
    # second_language evaluator (configs/uclip.py) the heads.
    assert {k: summary["eval"][k] for k in base_eval} == base_eval
    assert 0 <= summary["eval"]["second_language/uclip_second/text_to_image_R@1"] <= 1
    tokenizer = load_tokenizer(f"{tmp_path}/tokenizer.model")
    model = build_model(config, tokenizer.vocab_size)
    params, step = restore_params(config, str(tmp_path), model)
    assert step == 2
    metrics = second_language_retrieval(
        model, params, tokenizer, num_examples=32, image_size=16, max_len=16, mismatch=config.uclip.mismatch
    )
    for prefix in ("clip_english", "clip_second", "uclip_english", "uclip_second"):
        assert 0.0 <= metrics[f"{prefix}/image_to_text_R@1"] <= metrics[f"{prefix}/image_to_text_R@10"] <= 1.0


def test_proclip_stage_one_distils_into_the_frozen_clip_and_stage_two_tunes_the_image_tower(base_run, tmp_path):
    from evaluation.run import restore_params
    from input_pipeline.tokenizer import load_tokenizer
    from models.two_tower import build_model

    def proclip_config(name):
        config = tiny(get_config(name), 2)
        config.model.update(head_dim=16, head_hidden_dim=32)  # the MLP maps into the 16-wide CLIP space
        config.proclip.embedder_workdir = base_run  # G = the base run's own text tower
        return config

    stage1 = proclip_config("proclip_stage1")
    stage1.init_from.workdir = base_run
    validate_config(stage1)
    first = train_and_evaluate(stage1, str(tmp_path / "stage1"))
    records = [json.loads(line) for line in open(first["metrics"], encoding="utf-8")]
    train = next(r for r in records if "train/loss" in r)
    assert np.isfinite(train["train/instance_loss"]) and np.isfinite(train["train/structure_loss"])
    with open(f"{base_run}/summary.json", encoding="utf-8") as f:
        base_eval = json.load(f)["eval"]
    assert {k: first["eval"][k] for k in base_eval} == base_eval  # every CLIP parameter stayed frozen
    # The proclip_text evaluator (configs/proclip_stage1.py): the text tower's retrieval is the shapes evaluator's.
    assert first["eval"]["proclip_text/clip/image_to_text_R@1"] == base_eval["retrieval/image_to_text_R@1"]
    assert 0 <= first["eval"]["proclip_text/proclip/image_to_text_R@1"] <= 1

    stage2 = proclip_config("proclip")
    stage2.init_from.workdir = str(tmp_path / "stage1")
    validate_config(stage2)
    second = train_and_evaluate(stage2, str(tmp_path / "stage2"))
    assert np.isfinite(second["final_loss"])
    tokenizer = load_tokenizer(f"{tmp_path}/stage2/tokenizer.model")
    model = build_model(stage2, tokenizer.vocab_size)
    before, _ = restore_params(stage1, str(tmp_path / "stage1"), build_model(stage1, tokenizer.vocab_size))
    after, _ = restore_params(stage2, str(tmp_path / "stage2"), model)
    np.testing.assert_array_equal(after["text_tower"]["token_embedding"]["embedding"],
                                  before["text_tower"]["token_embedding"]["embedding"])  # fmt: skip
    assert not np.array_equal(after["text_head"]["fc1"]["kernel"], before["text_head"]["fc1"]["kernel"])
    assert not np.array_equal(after["image_projection"]["kernel"], before["image_projection"]["kernel"])
