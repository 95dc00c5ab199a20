"""Metrics to metrics.jsonl and TensorBoard event files (process 0 only)."""

from __future__ import annotations

import json
import os
import re
import sys
import time

import numpy as np


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch: tensorboardX imports torch (when installed)
    only to accept torch tensors, which costs every run 2 s and 300 MB; we pass floats."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class MetricWriter:
    """`write(step, {name: scalar})` appends a JSON line and a TensorBoard scalar per metric."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, "tensorboard")
        if enabled:
            self._tensorboard = _summary_writer_class()(self.tensorboard_dir, flush_secs=30)
            self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **scalars}) + "\n")
        self._jsonl.flush()
        for name, value in scalars.items():
            # TensorBoard tags allow [A-Za-z0-9_./-]: "R@1" becomes "R_1" (metrics.jsonl keeps "R@1").
            self._tensorboard.add_scalar(re.sub(r"[^\w./-]", "_", name), value, global_step=int(step))

    def close(self) -> None:
        if self.enabled:
            self._tensorboard.close()
            self._jsonl.close()
