"""The runs of a config's sweep: expansion of `get_hyper(hyper)`, checked overrides and workdir names.

    python -m launch.sweep --config=configs/clip.py --list                      # index, workdir name, flags
    python -m launch.sweep --config=configs/clip.py --workdir=runs/sweep --list # ... and whether each finished
    python -m launch.sweep --config=configs/clip.py --workdir=runs/sweep --summary [-- --config.total_steps=3]

A config file may define `get_hyper(hyper)` (see launch/hyper.py) next to `get_config(arg)`. Each run
is the config with the run's overrides, trained in <workdir>/<name>, where the name lists the overrides
(`learning_rate=0.001,batch_size=64`). Flags after `--` (`--config.key=value`) apply to every run and
are not part of the names. `python -m launch.local` runs the sweep.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import hashlib
import importlib.util
import json
import os
import re
import shlex
import sys
from typing import Any

import ml_collections

from configs.common import flat_items
from configs.errors import ConfigError
from launch import hyper, results
from training.validation import validate_config

# Longer names are cut and end in a hash of the overrides: file systems cap a name at 255 bytes.
MAX_NAME_CHARS = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=,-]")


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: its position, overrides {"a.b": value}, workdir name and full config."""

    index: int
    overrides: dict[str, Any]
    name: str
    config: ml_collections.ConfigDict


def load_config_file(spec: str) -> tuple[Any, ml_collections.ConfigDict]:
    """The module and config of `path.py[:arg=val,...]`, as main.py's --config reads them."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"Config file {path!r} does not exist; pass --config=configs/<method>.py.")
    module_spec = importlib.util.spec_from_file_location(f"_sweep_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except ValueError as e:  # configs/common.py's argument errors are one sentence already
        raise ConfigError(str(e)) from None
    return module, config


def _flag_value(value: Any) -> str:
    """A value as ml_collections' `--config.key=` flag parses it back."""
    return value if isinstance(value, str) else repr(tuple(value) if isinstance(value, list) else value)


def override_flags(overrides: dict[str, Any]) -> list[str]:
    """["--config.a.b=value", ...] for main.py."""
    return [f"--config.{key}={_flag_value(value)}" for key, value in overrides.items()]


def main_flags(spec: str, run: Run, workdir: str, common_flags: list[str]) -> list[str]:
    """main.py's flags for `run` of the sweep of config file `spec`, trained under `workdir`."""
    run_workdir = os.path.join(workdir, run.name)
    return [f"--config={spec}", f"--workdir={run_workdir}", *override_flags(run.overrides), *common_flags]


def _unknown_key(key: str, valid: list[str], where: str) -> ConfigError:
    near = difflib.get_close_matches(key, valid, n=5, cutoff=0.6)
    same_group = [k for k in valid if k.split(".")[0] == key.split(".")[0]]
    suggestions = near or same_group or valid
    return ConfigError(f"{where} sets config.{key}, which is not a config key; use one of {suggestions}.")


def _normalise(run: dict[str, Any], valid: list[str], where: str) -> dict[str, Any]:
    out = {}
    for key, value in run.items():
        short = key.removeprefix("config.")
        if short not in valid:
            raise _unknown_key(short, valid, where)
        out[short] = value
    return out


def parse_override_flags(flags: list[str], config: ml_collections.ConfigDict) -> dict[str, Any]:
    """{"a.b": value} from ["--config.a.b=value", ...], each value typed like the config's default."""
    flat = flat_items(config)
    overrides = {}
    for flag in flags:
        key, sep, text = flag.removeprefix("--config.").partition("=")
        if not flag.startswith("--config.") or not sep:
            raise ConfigError(f"Flag {flag!r} after -- is not of the form --config.key=value; fix or drop it.")
        if key not in flat:
            raise _unknown_key(key, sorted(flat), f"Flag {flag!r}")
        default = flat[key]
        try:
            if isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                overrides[key] = text.lower() in ("true", "1")
            elif isinstance(default, (int, float)):
                overrides[key] = type(default)(text)
            elif isinstance(default, (tuple, list)):
                overrides[key] = tuple(ast.literal_eval(text))
            else:
                overrides[key] = text
        except (ValueError, SyntaxError, TypeError):
            raise ConfigError(f"Flag {flag!r}: {text!r} is not a {type(default).__name__}; fix the value.") from None
    return overrides


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with {"a.b": value} set, then validated as main.py validates it."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        try:
            node[leaf] = tuple(value) if isinstance(value, list) else value
        except TypeError:
            raise ConfigError(f"config.{key} cannot take {value!r}: its default is {node[leaf]!r}.") from None
    validate_config(config)
    return config


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's shortest suffix of whole components that no other key ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        short[key] = suffix
    return short


def _hash(overrides: dict[str, Any]) -> str:
    text = json.dumps({k: _flag_value(v) for k, v in overrides.items()}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def run_names(sweep: list[dict[str, Any]]) -> list[str]:
    """Filesystem-safe, stable and unique workdir names, "k1=v1,k2=v2", from each run's overrides.

    Keys are shortened to their shortest unambiguous suffix within the sweep; characters other than
    letters, digits and `._+=,-` become `_`; names that would collide or exceed MAX_NAME_CHARS end in a
    hash of the full overrides instead.
    """
    keys = list(dict.fromkeys(k for run in sweep for k in run))
    short = _short_keys(keys)
    names = []
    for run in sweep:
        name = ",".join(f"{short[k]}={_flag_value(v)}" for k, v in run.items()) or "default"
        name = _UNSAFE.sub("_", name)
        names.append(name[: MAX_NAME_CHARS - 9] + "-" + _hash(run) if len(name) > MAX_NAME_CHARS else name)
    hashes = [_hash(run) for run in sweep]
    first: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h in first:
            raise ConfigError(f"Runs {first[h]} and {i} of the sweep have the same overrides {sweep[i]}; drop one.")
        first[h] = i
    counts = {n: names.count(n) for n in names}
    return [f"{n}-{h}" if counts[n] > 1 else n for n, h in zip(names, hashes, strict=True)]


def expand(spec: str, common_flags: list[str] = ()) -> list[Run]:
    """The runs of the config file `spec`'s get_hyper, each with `common_flags` applied and validated."""
    module, config = load_config_file(spec)
    path = spec.partition(":")[0]
    if not hasattr(module, "get_hyper"):
        raise ConfigError(f"{path} defines no get_hyper(hyper); add one returning e.g. hyper.product([...]).")
    try:
        sweep = module.get_hyper(hyper)
    except ValueError as e:
        raise ConfigError(f"{path}'s get_hyper: {e}") from None
    valid = sorted(flat_items(config))
    sweep = [_normalise(run, valid, f"{path}'s get_hyper") for run in sweep]
    common = parse_override_flags(list(common_flags), config)
    swept_and_common = sorted({k for run in sweep for k in run} & set(common))
    if swept_and_common:
        raise ConfigError(f"The sweep already sets {swept_and_common}; drop them from the flags after --.")
    names = run_names(sweep)
    runs = []
    for index, (overrides, name) in enumerate(zip(sweep, names, strict=True)):
        try:
            run_config = apply_overrides(config, {**overrides, **common})
        except ConfigError as e:
            raise ConfigError(f"Run {index} ({name}): {e}") from None
        runs.append(Run(index, overrides, name, run_config))
    return runs


def select(runs: list[Run], indices: str) -> list[Run]:
    """The runs at the comma-separated `indices` ("" = all)."""
    if not indices:
        return runs
    try:
        chosen = [int(i) for i in indices.split(",")]
    except ValueError:
        raise ConfigError(f"--only takes comma-separated run indices, not {indices!r}.") from None
    bad = [i for i in chosen if not 0 <= i < len(runs)]
    if bad:
        raise ConfigError(f"--only names runs {bad}, but the sweep has runs 0 to {len(runs) - 1}; see --list.")
    return [runs[i] for i in chosen]


def finished(run: Run, workdir: str) -> bool:
    """Whether <workdir>/<run.name>/summary.json reports the run's last step."""
    summary = results.read_summary(os.path.join(workdir, run.name))
    return summary is not None and summary.get("step", -1) >= run.config.total_steps


def sweep_table(runs: list[Run], workdir: str) -> str:
    """The summary table of the finished runs, seeds of otherwise equal runs folded into one row."""
    without_seed = [{k: v for k, v in run.overrides.items() if k != "seed"} for run in runs]
    unique = {_hash(o): o for o in without_seed}  # first-seen order
    name_of = dict(zip(unique, run_names(list(unique.values())), strict=True))
    groups: dict[str, list[dict]] = {name: [] for name in name_of.values()}
    missing = []
    for run, overrides in zip(runs, without_seed, strict=True):
        summary = results.read_summary(os.path.join(workdir, run.name))
        if summary is None or "eval" not in summary:
            missing.append(run.name)
        else:
            groups[name_of[_hash(overrides)]].append(summary)
    table = results.results_table({k: v for k, v in groups.items() if v}, name_header="run", with_loss=True)
    if missing:
        table += f"\n\n{len(missing)} of {len(runs)} runs have no summary.json yet (not run, running or failed): "
        table += ", ".join(missing)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="Config file with get_hyper, optionally with ':arg=val'.")
    parser.add_argument("--workdir", help="Parent folder of the runs' workdirs.")
    parser.add_argument("--list", action="store_true", help="Print the runs (and with --workdir, which finished).")
    parser.add_argument("--summary", action="store_true", help="Print the table of the runs' final metrics.")
    args, common = parser.parse_known_args(argv)
    common = [flag for flag in common if flag != "--"]
    if args.summary and not args.workdir:
        sys.exit("error: --summary reads the runs' summary.json files; add --workdir=<the sweep's folder>.")
    if not (args.list or args.summary):
        sys.exit("error: say what to do: --list, or --summary with --workdir (python -m launch.local runs a sweep).")
    try:
        runs = expand(args.config, common)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    if args.list:
        where = f" in {args.workdir}" if args.workdir else ""
        print(f"{len(runs)} runs of {args.config}'s get_hyper{where}:")
        for run in runs:
            status = ("finished  " if finished(run, args.workdir) else "not done  ") if args.workdir else ""
            print(f"{run.index:4d}  {status}{run.name}  {shlex.join(override_flags(run.overrides))}")
    if args.summary:
        print(sweep_table(runs, args.workdir))


if __name__ == "__main__":
    main()
