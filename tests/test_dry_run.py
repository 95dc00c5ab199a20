"""The dry run builds the full-size B/16 train state for a mesh without allocating it, compiles the
sharded train step without running it, reports per-device memory by kind, and refuses a config that
does not fit the stated device memory."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import ml_collections
import pytest

from configs.clip import get_config
from configs.errors import ConfigError
from training.dry_run import dry_run, memory_error, plan, resident_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2**30

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)


def _b16_on_8_devices(**overrides):
    """ViT-B/16 + 12-layer text tower on data=2 x fsdp=4, global batch 16. The full run (256 devices,
    batch 32,768) is measured from the command line (BENCHMARKS.md)."""
    config = get_config("size=B/16")
    config.update_from_flattened_dict(
        {"dry_run.devices": 8, "batch_size": 16, "mesh.data": 2, "mesh.fsdp": 4, **overrides}
    )
    return config


def test_b16_state_per_device_matches_a_count_by_hand():
    config = _b16_on_8_devices()
    report = resident_report(plan(config))
    # ViT-B/16 + text tower: 149.6M float32 parameters (CLIP's paper: 149.6M with a 49,408-token
    # vocabulary; here 1,000 tokens, 24.8M fewer), so 0.46 GiB in all, 1/4 per device over fsdp=4
    # with the small ones replicated; AdamW holds two moments of each.
    params = 149.6e6 - (49_408 - config.text.vocab_size) * 512
    assert report["params_gib"] == pytest.approx(params * 4 / 4 / GIB, rel=0.02)
    assert report["optimizer_state_gib"] == pytest.approx(2 * report["params_gib"], rel=0.01)
    assert report["batch_gib"] == pytest.approx(16 / 8 * (224 * 224 * 3 + 77 * 4) / GIB, rel=1e-6)  # uint8 pixels
    assert report["other_state_gib"] * GIB == 4 + 8  # step (int32) and the rng key (2 x uint32)


@pytest.mark.parametrize("kernel", ["cudnn", "pallas"])
def test_a_flash_attention_config_is_planned_with_xla_attention(capsys, kernel):
    """cuDNN's kernel cannot lower on the fake CPU devices, Pallas' would be its interpreter; the plan swaps in
    XLA's and says so."""
    config = _b16_on_8_devices(**{"model.attention": kernel, "model.dtype": "bfloat16"})
    p = plan(config)
    assert p.model.attention == "xla" and config.model.attention == kernel  # the caller's config is untouched
    assert "compiled with 'xla'" in capsys.readouterr().out


def test_b16_blocks_compile_on_an_fsdp_mesh_and_report_memory(capsys):
    # The real B/16 widths, heads, patch size, image size and text length, with one block per tower:
    # compiling 12 + 12 blocks takes over a minute on two cores (60 s scanned, 73 s unrolled), one each seconds.
    config = _b16_on_8_devices(**{"model.image.depth": 1, "model.text.depth": 1, "model.dtype": "bfloat16"})
    report = dry_run(config)
    resident = sum(report[f"{row}_gib"] for row in ("params", "optimizer_state", "other_state", "batch"))
    # The backward pass keeps at least each block's input: 2 examples x 197 tokens x 768 in bf16.
    assert report["activations_and_temporaries_gib"] * GIB > 2 * 197 * 768 * 2
    assert resident < report["peak_gib"] <= resident + report["activations_and_temporaries_gib"] + 2 * resident
    out = capsys.readouterr().out
    assert "| params |" in out and "| activations and temporaries |" in out and "'fsdp': 4" in out
    # FSDP over 4 devices gathers every block's weights (forward and again in the backward pass, or kept):
    # at least 3/4 of the two blocks' bf16 matmul weights, 12 * 768^2 + 12 * 512^2 parameters, per step.
    gathered = (12 * 768**2 + 12 * 512**2) * 2 * 3 / 4
    assert report["sent_all-gather_gib"] * GIB >= gathered and not report["sent_is_lower_bound"]
    assert report["sent_gib"] == pytest.approx(
        sum(v for k, v in report.items() if k.startswith("sent_") and k.endswith("_gib") and k != "sent_gib")
    )
    assert "Collectives: " in out and "GiB sent per device per step (all-" in out


def test_remat_lowers_the_reported_activations():
    # XLA's CPU compiler would merge remat's recomputation back into the forward pass, reporting the
    # same memory with and without remat; the dry run compiles so that remat's saving shows. Without
    # remat the backward pass keeps, among others, each image block's MLP hidden activations
    # (8 examples x 9 tokens x 512 floats per device); with it, only the blocks' inputs.
    def temporaries(remat):
        config = get_config(None)  # the tiny ViT: 48 px, patch 16 -> 9 tokens, width 128, MLP 512
        config.update_from_flattened_dict({
            "dry_run.devices": 8, "batch_size": 64, "mesh.data": 8, "model.remat": remat,
            "model.image.depth": 4, "model.image.conv_stem_depth": 0, "model.text.depth": 1,
        })  # fmt: skip
        return dry_run(config)["activations_and_temporaries_gib"] * GIB

    mlp_hidden_per_block = 8 * 9 * 512 * 4
    assert temporaries(False) - temporaries(True) > (4 - 1) * mlp_hidden_per_block


def test_memory_error_names_the_budget_and_the_knobs():
    assert memory_error(1.0, 1.0, "") is None
    message = memory_error(40.25, 32.0, "")
    assert message.startswith(
        "The train step needs 40.2 GiB per device, more than config.dry_run.device_memory_gib (32)"
    )
    assert "config.mesh.fsdp" in message and "config.model.remat=True" in message and "config.microbatches" in message
    tuned = ml_collections.ConfigDict({"model": {"remat": True, "dtype": "bfloat16"}})
    message = memory_error(40.25, 32.0, "", tuned)  # knobs already turned are not suggested again
    assert message.endswith("; shard more (config.mesh.fsdp), or split the batch with config.microbatches.")


def test_main_dry_run_fails_in_one_sentence_when_memory_is_short(tmp_path):
    command = [
        sys.executable, "main.py", "--config=configs/clip.py", f"--workdir={tmp_path}", "--dry_run",
        "--config.dry_run.devices=4", "--config.batch_size=8", "--config.mesh.fsdp=2",
        "--config.dry_run.device_memory_gib=0.001",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The train step needs at least (state and batch alone) ")
    assert "config.dry_run.device_memory_gib (0.001)" in last
    assert "| optimizer state |" in result.stdout and "'data': 2, 'fsdp': 2" in result.stdout


def test_too_few_devices_is_a_config_error():
    config = get_config(None)
    config.dry_run.devices = 4096
    with pytest.raises(ConfigError, match="needs 4096 devices but jax started with 8"):
        dry_run(config)
