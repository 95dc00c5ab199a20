"""Test setup: 8 fake CPU devices (set before jax starts) and absl flags marked parsed."""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

# grain's multiprocessing and absl logging read flags, which pytest never parses.
flags.FLAGS.mark_as_parsed()
