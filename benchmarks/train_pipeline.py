"""The trainer's own input pipeline for a config, alone (no model): batches/s by grain worker count.

    python benchmarks/train_pipeline.py --config=configs/laclip.py --workers=0,1,2,4,8,16

Builds what training/loop.py builds — the config's task, its tokenizer (trained once into a temporary
folder when the config names none), the transform and make_train_iterator — and, per worker count
(config.data.worker_count), takes --warmup batches (workers starting, first reads) and times the next
--batches. The quick start on a GPU is input-bound (issue 23: 28–61 steps/s with 16 host cores); its
goal is >= 300 batches/s of 128, so this table says which worker count reaches it on a given host.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from input_pipeline.pipeline import make_train_iterator  # noqa: E402
from input_pipeline.tokenizer import get_tokenizer  # noqa: E402
from training.task import make_task  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/laclip.py", "Config file, optionally with ':arg=value'.")
_WORKERS = flags.DEFINE_string("workers", "0,1,2", "Comma-separated config.data.worker_count values.")
_BATCHES = flags.DEFINE_integer("batches", 100, "Timed batches per worker count.")
_WARMUP = flags.DEFINE_integer("warmup", 10, "Untimed batches first (worker start-up, first reads).")


def batches_per_second(source, transform, config, workers: int) -> float:
    """Batches of config.batch_size per second from make_train_iterator with `workers` worker processes."""
    iterator = make_train_iterator(
        source,
        transform,
        global_batch_size=config.batch_size,
        seed=config.seed,
        worker_count=workers,
        read_threads=config.data.read_threads,
    )
    for _ in range(_WARMUP.value):
        next(iterator)
    start = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(iterator)
    return _BATCHES.value / (time.perf_counter() - start)


def main(argv) -> None:
    del argv
    config = _CONFIG.value
    task = make_task(config)
    with tempfile.TemporaryDirectory() as workdir:
        tokenizer = get_tokenizer(
            config.text.tokenizer_path, workdir, task.corpus(), config.text.vocab_size, config.text.tokenizer
        )
    transform = task.transform(tokenizer)
    print(
        f"{config.data.name}, batch {config.batch_size}, read_threads {config.data.read_threads}, "
        f"{os.cpu_count()} CPUs; {_BATCHES.value} batches after {_WARMUP.value}\n"
    )
    print("| workers | batches/s | examples/s | vs inline |\n|---|---|---|---|")
    inline = None
    for workers in (int(w) for w in _WORKERS.value.split(",")):
        rate = batches_per_second(task.source, transform, config, workers)
        inline = inline or rate
        print(f"| {workers} | {rate:.1f} | {rate * config.batch_size:.0f} | {rate / inline:.2f}x |", flush=True)


if __name__ == "__main__":
    app.run(main)
