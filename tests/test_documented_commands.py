"""Every command of README.md's and docs/*.md's ```bash blocks runs, at a tiny size, or says why not.

RULES (tests/documented_command_rules.py) classifies each command by its program and form. A command
that no rule matches fails test_every_documented_command_has_a_rule: add a rule for it. The commands a
rule RUNs execute in
document order, one temporary folder per doc file (so `runs/...` of an earlier command is there for a
later one), with the repository's files linked into it, as a user runs them from a checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from documented_command_rules import CHECK, RUN, SKIP, TINY_MODEL, TINY_RUN, VALIDATE, action_of, rule_of
from documented_commands import ROOT, Command, commands_of, documented_files

from launch.results import split_configs


def _python(command: Command, program: str) -> bool:
    return command.argv[:2] == ("python", program) or command.argv[:3] == ("python", "-m", program)


def all_commands() -> list[Command]:
    return [c for doc in documented_files() for c in commands_of(doc)]


def run_argv(command: Command) -> list[str]:
    """The command as the test runs it: at a tiny size, the documented flags first."""
    argv, optional = list(command.argv), list(command.optional)
    if _python(command, "main.py"):
        return argv + [*TINY_RUN, *TINY_MODEL]
    if _python(command, "benchmarks/compare_methods.py"):
        argv = [re.sub(r"^--seeds=.*", "--seeds=0", a) for a in argv]
        return argv + ([] if "--" in argv else ["--"]) + [*TINY_RUN, *TINY_MODEL]
    if _python(command, "launch.local"):
        argv += optional
        # configs/clip.py's sweep sets the batch size, and flags after -- may not set what a sweep sets.
        tiny = [a for a in TINY_RUN if not a.startswith("--config.batch_size=")]
        return argv + ([] if "--" in argv else ["--"]) + [*tiny, *TINY_MODEL]
    if re.match(r"python benchmarks/(\w+_retrieval|shape_probe)\.py", " ".join(argv)):
        return argv + ["--num_examples=64"]
    return argv


def tiny_run_key(argv: list[str]) -> tuple[str, ...]:
    """`argv` without the documented flags that the tiny size overrides (step counts, seeds)."""
    overridden = {a.split("=", 1)[0] for a in TINY_RUN} | {"--seeds"}
    tiny = set(TINY_RUN)
    return tuple(a for a in argv if a in tiny or a.split("=", 1)[0] not in overridden)


def trained_configs(argv: list[str]) -> set[tuple[str, tuple[str, ...]]]:
    """(config, its overrides beyond the tiny size's) of each run a main.py or compare_methods command trains."""
    overridden = {a.split("=", 1)[0] for a in TINY_RUN} | {"--seeds", "--workdir", "--config.seed"}
    keep = lambda flags: tuple(a for a in flags if a.split("=", 1)[0] not in overridden and a not in TINY_MODEL)  # noqa: E731
    if argv[:2] == ["python", "main.py"]:
        config = next(a for a in argv if a.startswith("--config=")).split("=", 1)[1]
        return {(config, keep(a for a in argv[2:] if not a.startswith("--config=")))}
    if argv[:2] == ["python", "benchmarks/compare_methods.py"]:
        flags = argv[argv.index("--") + 1 :] if "--" in argv else []
        configs = next(a for a in argv if a.startswith("--configs=")).split("=", 1)[1]
        return {(config, keep(flags)) for config in split_configs(configs)}
    return set()


def without_trained(argv: list[str], trained: set) -> list[str] | None:
    """A compare_methods command whose configs a command before it already trained at the tiny size (same
    overrides) runs the others only, or not at all (None); any other command as it is."""
    if argv[:2] != ["python", "benchmarks/compare_methods.py"]:
        return argv
    left = [config for config, flags in sorted(trained_configs(argv)) if (config, flags) not in trained]
    if not left:
        return None
    return [f"--configs={','.join(left)}" if a.startswith("--configs=") else a for a in argv]


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    # One CPU device as for a user; LLVM at -O0: compiling costs far more than the two steps run.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory) -> str:
    """A jax compilation cache the runs share: most of them compile the same tiny towers."""
    path = tmp_path_factory.getbasetemp().parent / "documented_commands_jax_cache"
    path.mkdir(exist_ok=True)
    return str(path)


def checkout_view(path) -> str:
    """`path` with every top-level file and folder of the checkout linked into it, but no runs/."""
    for name in os.listdir(ROOT):
        if name not in ("runs", ".git") and not name.startswith("."):
            os.symlink(os.path.join(ROOT, name), path / name)
    return str(path)


def execute(argv: list[str], cwd: str, cache: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = _environment()
    env.update(
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# Docs whose commands need the runs of another doc's: that doc's RUN commands run first in the doc's folder, and
# not in a group of their own (the README's are the quick start, which docs/evaluation.md evaluates).
PREREQUISITES = {"docs/evaluation.md": "README.md"}


def test_every_documented_command_has_a_rule():
    commands = all_commands()
    assert len(commands) > 40, "the parser found too few commands; check tests/documented_commands.py"
    unmatched = [str(c) for c in commands if rule_of(c) is None]
    assert not unmatched, "no rule for these documented commands; add a rule to RULES:\n" + "\n".join(unmatched)


def test_the_quick_start_command_is_the_main_job_run_here():
    """The README's first command installs and trains; its training command runs first in docs/evaluation.md's group."""
    first, second, *_ = commands_of("README.md")
    assert first.argv == ("pip", "install", "-e", ".")
    assert second.argv == ("python", "main.py", "--config=configs/laclip.py", "--workdir=runs/laclip")


def _runnable_docs() -> list[str]:
    docs = sorted({c.doc for c in all_commands() if action_of(c) == RUN} - set(PREREQUISITES.values()))
    # The longest groups first, so that pytest-xdist starts them first.
    return sorted(docs, key=lambda d: -sum(action_of(c) == RUN for c in commands_of(d)))


@pytest.mark.parametrize("doc", _runnable_docs())
def test_documented_commands_run(doc, tmp_path, compilation_cache):
    cwd = checkout_view(tmp_path)
    commands = [c for c in commands_of(doc) if action_of(c) == RUN]
    if doc in PREREQUISITES:
        commands = [c for c in commands_of(PREREQUISITES[doc]) if action_of(c) == RUN] + commands
    ran, trained = set(), set()
    for command in commands:
        rule, argv = rule_of(command), without_trained(run_argv(command), trained)
        if argv is None or tiny_run_key(argv) in ran:
            continue  # the same tiny runs as earlier commands, which differed only in what the tiny run overrides
        ran.add(tiny_run_key(argv))
        trained |= trained_configs(argv)
        result = execute(argv, cwd, compilation_cache)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command}\nfailed with status {result.returncode}:\n{output[-4000:]}"
        assert re.search(rule.finished, output), f"{command}\nshows no /{rule.finished}/:\n{output[-4000:]}"


def _checked_commands(action: str) -> list:
    return [pytest.param(c, id=f"{c.doc}:{c.line}:{c.argv[0]}") for c in all_commands() if action_of(c) == action]


VALIDATE_SCRIPT = """
import sys
from absl import flags
argv = sys.argv[1:]
if argv[0] == "main.py":
    import main
    from training.validation import validate_config
    main.parse_flags(argv)
    validate_config(main._CONFIG.value)
else:
    import importlib
    importlib.import_module(argv[0])
    flags.FLAGS(argv)
print("valid")
"""


@pytest.mark.parametrize("command", _checked_commands(VALIDATE))
def test_documented_commands_validate(command, tmp_path):
    """Flags parse and, for main.py, the config passes training.validation.validate_config."""
    program = command.argv[1] if command.argv[1] != "-m" else command.argv[2]
    args = list(command.argv[2:] if command.argv[1] != "-m" else command.argv[3:])
    result = subprocess.run(
        [sys.executable, "-c", VALIDATE_SCRIPT, program, *args],
        cwd=checkout_view(tmp_path),
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("valid"), (
        f"{command}\n{rule_of(command).reason}\n{result.stdout}{result.stderr}"[-4000:]
    )


@pytest.mark.parametrize("command", _checked_commands(CHECK))
def test_documented_commands_check(command):
    """What a cluster command needs from the checkout exists (and a batch script parses)."""
    if command.argv[0] == "xmanager":
        assert os.path.isfile(os.path.join(ROOT, command.argv[2])), command
    elif command.argv[:2] == ("python", "benchmarks/compare_methods.py"):
        _check_compare_methods(command)
    elif command.argv[:2] == ("python", "main.py"):  # the config loads and takes the overrides
        script = "import sys, main; main.parse_flags(sys.argv[1:]); print(main._CONFIG.value.objective)"
        parsed = subprocess.run([sys.executable, "-c", script, *command.argv[1:]], cwd=ROOT, env=_environment(),
                                capture_output=True, text=True)  # fmt: skip
        assert parsed.returncode == 0 and parsed.stdout.strip(), f"{command}\n{parsed.stderr[-3000:]}"
    elif command.argv[0] == "python":
        help_run = subprocess.run(
            [sys.executable, command.argv[1], "--help"], cwd=ROOT, env=_environment(), capture_output=True, text=True
        )
        assert help_run.returncode == 0, f"{command}\n{help_run.stderr[-3000:]}"
    else:
        script = next(a for a in command.argv[1:] if not a.startswith("-"))
        assert os.path.isfile(os.path.join(ROOT, script)), command
        subprocess.run(["bash", "-n", os.path.join(ROOT, script)], check=True)


def _check_compare_methods(command: Command) -> None:
    """Each of --configs loads with the command's overrides and passes validate_config, but for the trained
    runs it starts from (config.init_from.workdir, SALT's config.salt.teacher_workdir, MEND's config.mend.lm_workdir),
    which this check has not trained."""
    import importlib

    from training.validation import validate_config

    argv = list(command.argv[2:])
    configs = split_configs(next(a for a in argv if a.startswith("--configs=")).split("=", 1)[1])
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    for spec in configs:
        path, _, arg = spec.partition(":")
        config = importlib.import_module(path.removesuffix(".py").replace("/", ".")).get_config(arg or None)
        for override in overrides:
            key, value = override.removeprefix("--config.").split("=", 1)
            *parents, leaf = key.split(".")
            node = config
            for parent in parents:
                node = node[parent]
            node[leaf] = value == "true" if isinstance(node[leaf], bool) else type(node[leaf])(value)
        try:
            validate_config(config)
        except ValueError as error:
            named = ("init_from", "salt.teacher_workdir", "mend.lm_workdir")
            assert any(key in str(error) for key in named), f"{spec}: {error}"


@pytest.mark.parametrize("command", _checked_commands(SKIP))
def test_documented_commands_skipped(command):
    pytest.skip(rule_of(command).reason)
