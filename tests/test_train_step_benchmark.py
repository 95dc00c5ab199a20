"""benchmarks/train_step.py on a decoder, run as a user runs it: the tiny CPU size of a GPU preset, dense and xla
attention timed side by side in one process (what benchmarks/gpu_b16.sh's `decoder` stage runs at full size)."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_decoder_preset_times_its_attention_variants_in_one_run():
    command = [
        sys.executable, "benchmarks/train_step.py", "--config=configs/lm.py", "--decoder_preset=llama_small",
        "--attention_variants=dense,xla", "--config.model.decoder.depth=1", "--steps=2", "--repeats=1",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # The CPU size of the preset's style, with the command line's --config.* over the preset.
    assert "decoder llama_small: w64 d1 heads 4 kv 2 L64 vocab 1000, rms_norm, rope, swiglu" in out, out
    assert "| attention, remat | ms/step | examples/s | tokens/s | model TFLOP/s | MFU | vs dense, remat off |" in out
    row = re.compile(r"^\| (\w+, remat off) \| ([\d.]+) \| (\d+) \| (\d+) \|.*\| ([\d.]+)x \|$", re.M)
    rows = {name: values for name, *values in row.findall(out)}
    assert set(rows) == {"dense, remat off", "xla, remat off"}, out
    assert rows["dense, remat off"][-1] == "1.00"
    for ms, examples, tokens, _ in rows.values():  # batch 8 of 64 tokens
        assert abs(int(examples) - 8e3 / float(ms)) <= 0.05 * int(examples) + 1
        assert abs(int(tokens) - 64 * int(examples)) <= 64
