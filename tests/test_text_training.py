"""Text-only methods (SimCSE, MultiCSR, CCP) through the real trainer on the embedded sentences."""

from __future__ import annotations

import json
import math

import jax
import numpy as np

from configs import ccp, multicsr, simcse
from evaluation.evaluators import Evaluators
from input_pipeline.tokenizer import Tokenizer
from losses.objectives import get_objective
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.optimizer import make_optimizer
from training.partitioning import state_initializer
from training.validation import validate_config


def tiny(config, steps: int):
    config.total_steps, config.batch_size, config.log_every_steps = steps, 32, steps // 2
    config.eval_every_steps = config.checkpoint_every_steps = 1000
    config.data.train_size = 2000
    config.eval.update(num_examples=200, batch_size=200)
    config.model.text.update(width=32, depth=1, heads=2)
    config.model.embed_dim = 32
    config.text.vocab_size = 500
    config.optimizer.update(warmup_steps=5, learning_rate=3e-3)
    validate_config(config)
    return config


def _train_records(workdir) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "train/loss" in r]


def _untrained_sts(config, workdir) -> float:
    """STS Spearman of the initial params of `config`'s run (same seed, same tokenizer)."""
    with open(workdir / "tokenizer.model", "rb") as f:
        tokenizer = Tokenizer(f.read())
    model = build_model(config, tokenizer.vocab_size)
    init = state_initializer(config, model, make_optimizer(config), get_objective(config.objective))
    params = jax.jit(init)(jax.random.PRNGKey(config.seed)).params
    return Evaluators(config, model, tokenizer).evaluate(params)["sts/avg"]


def test_supervised_simcse_raises_sts_spearman_above_the_untrained_encoder(tmp_path):
    # Width 32 at 3e-3 collapsed (positive and negative cosines all ~0.99); width 64 at 1e-3 learns:
    # 300 steps gave Spearman 55 against about 10 untrained (steps are cheap, compiling is not).
    config = tiny(simcse.get_config("mode=sup"), 300)
    config.optimizer.learning_rate = 1e-3
    config.model.text.width = config.model.embed_dim = 64
    summary = train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 300 and math.isfinite(summary["final_loss"])
    trained, untrained = summary["eval"]["sts/avg"], _untrained_sts(config, tmp_path)
    assert trained > untrained + 10, (trained, untrained)
    records = _train_records(tmp_path)
    assert records[-1]["train/accuracy"] > records[0]["train/accuracy"]
    assert {"sts/shapes_sts", "sts_calibrated/avg"} <= set(summary["eval"])


def test_unsupervised_simcse_then_multicsr_from_it(tmp_path):
    unsup_dir, multicsr_dir = tmp_path / "unsup", tmp_path / "multicsr"
    summary = train_and_evaluate(tiny(simcse.get_config("mode=unsup"), 8), str(unsup_dir))
    assert math.isfinite(summary["final_loss"]) and summary["final_loss"] > 0
    config = multicsr.get_config()
    config.init_from.workdir = str(unsup_dir)  # set before tiny() validates: MultiCSR needs its frozen encoder
    config.text.tokenizer_path = str(unsup_dir / "tokenizer.model")  # the frozen encoder's vocabulary
    config = tiny(config, 4)
    summary = train_and_evaluate(config, str(multicsr_dir))
    assert math.isfinite(summary["final_loss"])
    records = _train_records(multicsr_dir)
    assert all(np.isfinite(r["train/false_negatives_masked"]) for r in records)
    assert records[-1]["train/skipped"] == 0


def test_ccp_trains_with_banks_and_reports_calibrated_sts(tmp_path):
    config = tiny(ccp.get_config(), 6)
    config.ccp.queue_size = 64
    summary = train_and_evaluate(config, str(tmp_path))
    assert math.isfinite(summary["final_loss"])
    records = _train_records(tmp_path)
    # Banks start empty and fill with each step's contexts (two languages, 64 slots each).
    assert records[0]["train/bank_filled"] < records[-1]["train/bank_filled"] <= 1.0
    assert records[-1]["train/bank_filled"] > 0
    assert {"sts/avg", "sts_calibrated/avg"} <= set(summary["eval"])
