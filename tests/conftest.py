"""Test setup: 8 fake CPU devices and LLVM at -O0 (set before jax starts), and absl flags marked parsed."""

import os
import sys

# -O0: the tests' programs are tiny and run a few steps, so compiling costs more than running them (the
# in-process training tests take about half the CPU time at -O0; XLA's HLO passes, and so memory, are unchanged).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

# grain's multiprocessing and absl logging read flags, which pytest never parses.
flags.FLAGS.mark_as_parsed()
