"""Seed methods I (DreamLIP, ALIP, ProtoCLIP, CLIP + hard negatives): a few real training steps each."""

from __future__ import annotations

import json
import math

import pytest

from configs import alip, clip_hard_negatives, dreamlip, protoclip
from training.loop import train_and_evaluate
from training.validation import validate_config

# Method metrics each objective logs as train/<name>, besides loss.
METHOD_METRICS = {
    "dreamlip": ("clip_loss", "multipos_loss", "sgl_loss"),
    "alip": ("raw_loss", "caption_loss", "gated_fraction", "ema_text"),
    "protoclip": ("clip_loss", "proto_loss", "prototypes_ready"),
    "clip_hard_negatives": ("clip_loss", "hard_negative_loss", "hard_negatives_used", "false_negatives_dropped"),
}
CONFIGS = {"dreamlip": dreamlip, "alip": alip, "protoclip": protoclip, "clip_hard_negatives": clip_hard_negatives}


def tiny(config):
    config.total_steps, config.batch_size, config.log_every_steps = 6, 16, 2
    config.eval_every_steps = config.checkpoint_every_steps = 1000
    config.data.update(train_size=160, cache_dir="")
    config.eval.update(num_examples=64, batch_size=64)
    config.model.image.update(width=32, depth=1, heads=2)
    config.model.text.update(width=32, depth=1, heads=2)
    config.model.embed_dim = 32
    config.optimizer.warmup_steps = 1
    if config.objective == "protoclip":
        config.protoclip.update(episode_steps=2, num_prototypes=8)  # the prototypes are ready from step 2 on
    return config


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_method_trains_and_evaluates(name, tmp_path):
    config = tiny(CONFIGS[name].get_config())
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 6 and math.isfinite(summary["final_loss"])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == [2, 4, 6]
    for key in METHOD_METRICS[name]:
        assert all(math.isfinite(r[f"train/{key}"]) for r in train), key
    assert train[-1]["train/skipped"] == 0
    if name == "protoclip":
        assert train[0]["train/prototypes_ready"] == 0.0 and train[-1]["train/prototypes_ready"] == 1.0
        assert train[-1]["train/proto_loss"] > 0
    if name == "alip":  # the EMAs moved from their initial 1 towards the batch similarities
        assert train[-1]["train/ema_text"] < 1.0
    for prefix in ("zero_shot/", "retrieval/", "compositional/"):
        assert any(k.startswith(prefix) for k in summary["eval"]), prefix
