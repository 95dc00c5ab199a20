"""main.py's command line: absl flag parsing with a mistyped `--config.key=value` or a config file's own error
reported as one sentence. Apart from main.py so that tools and tests parse a command without main.py's flags
(absl refuses a flag defined twice in one process)."""

from __future__ import annotations

import sys

from absl import flags

from configs.errors import ConfigError
from launch.sweep import load_config_file


def unknown_key(argv: list[str], error: Exception) -> str:
    """One sentence for a `--config.a.b=value` whose key does not exist, listing the keys valid there."""
    inner = error.args[0] if error.args and isinstance(error.args[0], KeyError) else error
    key = str(inner.args[0] if inner.args else inner).splitlines()[0].strip("\"'")  # drops ml_collections' hint
    candidates = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.") and key in a.split("=")[0].split(".")]
    override = candidates[0] if candidates else f"--config...{key}"
    hint = "check the spelling against the config reference in docs/config.md"
    spec = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), "")
    try:  # the config file loaded alone (the flags could not be): the override that misses, the keys beside it
        config = load_config_file(spec)[1]
    except (ConfigError, KeyError, AttributeError, ValueError):
        return f"{override} names the config key {key!r}, which does not exist; {hint}."
    for name in candidates:  # e.g. --config.data.path and --config.evals.x.path: only one of them may miss
        node, parts = config, name.split(".")[1:]
        try:
            for part in parts[: parts.index(key)]:
                node = node[part]
        except (KeyError, AttributeError, TypeError):
            continue
        if hasattr(node, "keys") and key not in node:
            return f"{name} names the config key {key!r}, which does not exist; use one of {sorted(node.keys())}."
    return f"{override} names the config key {key!r}, which does not exist; {hint}."


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl flag parsing, with a mistyped `--config.key=value` reported as one sentence (`flag_values`: a test's
    own flags, parsed in its process)."""
    try:
        return flag_values(argv)
    except (AttributeError, KeyError) as e:
        sys.exit(f"error: {unknown_key(argv, e)}")
    except flags.Error as e:
        # A config file's own error arrives wrapped in its traceback: keep its last line.
        lines = [line for line in str(e).splitlines() if line.strip()]
        reason = lines[-1].split(": ", 1)[-1] if "Traceback" in str(e) else str(e)
        sys.exit(f"error: {reason}")
