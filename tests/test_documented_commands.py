"""Every command of README.md's and docs/*.md's ```bash blocks runs, at a tiny size, or says why not.

RULES classifies each command by its program and form. A command that no rule matches fails
test_every_documented_command_has_a_rule: add a rule for it. The commands a rule RUNs execute in
document order, one temporary folder per doc file (so `runs/...` of an earlier command is there for a
later one), with the repository's files linked into it, as a user runs them from a checkout.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest
from documented_commands import ROOT, Command, commands_of, documented_files

from launch.results import split_configs

RUN, VALIDATE, CHECK, SKIP = "run", "validate", "check", "skip"

# Appended to every trained main.py run: 2 steps of batch 16, an eval and a checkpoint at step 2.
TINY_RUN = (
    "--config.total_steps=2",
    "--config.eval_every_steps=2",
    "--config.checkpoint_every_steps=2",
    "--config.log_every_steps=1",
    "--config.batch_size=16",
    "--config.data.train_size=256",
    "--config.data.cache_dir=",
    "--config.eval.num_examples=64",
)
# One block per tower.
TINY_MODEL = ("--config.model.image.depth=1", "--config.model.text.depth=1")


@dataclasses.dataclass(frozen=True)
class Rule:
    form: str  # a regex the command (its argv joined by spaces) starts with
    action: str  # RUN, VALIDATE (flags and config only), CHECK (files the command needs), SKIP
    reason: str
    finished: str = ""  # RUN: a regex the output shows when the command finished


_BIG = r"--config=\S+:\S*size=(small|B/32|B/16|L/14)"
_YOUR_DATA = r"--config=\S+:\S*data=(csv|webdataset|jsonl|tfds|array_record)"
_MINILM = r"(\S*configs/lit\.py|\S+text=minilm)"
_MINILM_REASON = (
    "trains the pretrained 22M-parameter MiniLM tower, over 4 min for 2 steps on 2 shared cores "
    "(tests/test_lit.py checks the tower, its locking and SimCSE from it)"
)
# The first rule whose form matches a command decides what the test does with it.
RULES = (
    Rule(
        r"pip ",
        SKIP,
        "installs packages; a test must not change the environment (.ci/run runs the README's "
        "install command, test_readme.py checks it is the README's)",
    ),
    Rule(r"pytest", SKIP, "the test suite that runs this test"),
    Rule(r"gcloud ", SKIP, "needs a Google Cloud project and a Cloud TPU"),
    Rule(
        r"python main\.py --config=\S+:\S*(pretrained|image)=/path/to/",
        SKIP,
        "needs a downloaded checkpoint (tests/test_interop_siglip.py and test_interop_clip.py start from small "
        "random ones through these configs, as main.py does)",
    ),
    Rule(r"xmanager launch ", CHECK, "needs xmanager and a Vertex AI project: checks the launch file exists"),
    Rule(r"sbatch ", CHECK, "needs a SLURM cluster with GPUs: checks the script exists and `bash -n` parses it"),
    Rule(
        r"python main\.py .*--dry_run",
        VALIDATE,
        "compiles a ViT-B/16 step for 256 fake devices (4-12 min, "
        "11 GiB on 2 cores; tests/test_dry_run.py compiles a one-block B/16): flags and config checked only",
    ),
    Rule(
        rf"python main\.py {_BIG}",
        VALIDATE,
        "a ViT-B/16-sized model is too big for a 2-core CPU: flags and config checked only",
    ),
    Rule(
        rf"python main\.py {_YOUR_DATA}",
        VALIDATE,
        "reads your files under /data (tests/test_real_data_main.py "
        "trains on generated files of each format): flags and config checked only",
    ),
    Rule(
        rf"python main\.py --config={_MINILM}",
        VALIDATE,
        f"{_MINILM_REASON}: flags and config checked only",
    ),
    Rule(
        r"python main\.py --config=configs/clip\.py --workdir=runs/embedder ",
        CHECK,
        "a CLIP run as ProCLIP's frozen embedder, for the post-pretraining chain below that is checked, not run "
        "(configs/clip.py is trained by this doc's first command): main.py's flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/(simcse|multicsr|ccp)\.py",
        CHECK,
        "the text-only methods, each trained and evaluated at a tiny size by tests/test_text_training.py through the "
        "same loop: main.py's flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/clip\.py --workdir=runs/x ",
        CHECK,
        "shows how overrides are written (configs/clip.py is trained by docs/results.md's commands): its flags parse",
    ),
    Rule(
        r"python main\.py --config=configs/(limber|close)\.py",
        CHECK,
        "captions through a trained CLIP run and language model that the doc names, not trains "
        "(tests/test_captioning.py trains both captioners from tiny ones through main.py's loop): its flags parse",
    ),
    Rule(
        r"python main\.py .*--mode=eval",
        RUN,
        "evaluates the run an earlier command trained ([--eval_data] left out: it names your files)",
        r"Results in ",
    ),
    Rule(
        r"python main\.py .*--mode=generate",
        RUN,
        "continues the prompt with the language model an earlier command trained",
        r"(^|\n)(we see a|there is a)",
    ),
    Rule(r"python main\.py ", RUN, "trains at a tiny size", r"\nSummary\n"),
    Rule(
        r"python -m input_pipeline\.convert ",
        VALIDATE,
        "converts your files under /data (tests/test_real_data.py converts generated ones): flags checked only",
    ),
    Rule(
        rf"python benchmarks/compare_methods\.py --configs={_MINILM}",
        SKIP,
        f"{_MINILM_REASON}; each config's own main.py command is checked",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py .*--init_from=",
        CHECK,
        "a post-pretraining chain (a CLIP run per seed, then each method from it; tests/test_post_pretraining.py "
        "trains these configs from a tiny CLIP run): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/(second_language|proclip)_retrieval\.py ",
        CHECK,
        "scores a post-pretraining chain's runs (checked above): the script's flags parse",
    ),
    Rule(
        r"python benchmarks/(binding|region)_scores\.py ",
        CHECK,
        "scores runs trained beforehand (every training test runs the same evaluator): the script's flags parse",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/lm\.py,configs/simctg\.py ",
        CHECK,
        "the language models at 5 seeds (the doc runs configs/lm.py's commands; tests/test_language_model.py steps "
        "both objectives): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/xclip\.py ",
        CHECK,
        "X-CLIP is trained and evaluated at a tiny size by tests/test_xclip.py, and compare_methods' tables by "
        "docs/results.md's first command: the config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/(limber|close)\.py",
        CHECK,
        "captioners from the 5 CLIP runs of docs/results.md and the 5 language models above (tests/test_captioning.py "
        "trains both from tiny ones): every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py .*--workdir=runs/clip_untrained ",
        CHECK,
        "one step of configs/clip.py per seed, the untrained-encoder control (configs/clip.py is trained by "
        "docs/results.md's first command): the config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py .*--workdir=runs/cloc_off ",
        CHECK,
        "the CLOC comparison above with its region losses weighted 0 (tests/test_cloc.py checks the weights): "
        "the config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/(clip\.py,configs/(dreamlip|alip)|cloc|alip)\.py",
        CHECK,
        "seed methods that their own tests train and evaluate (tests/test_methods1_training.py, test_cloc.py), and "
        "compare_methods' table is run by this doc's first command: every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py --configs=configs/clip\.py,configs/laclip\.py --seeds=0,1,2 ",
        CHECK,
        "the 3-seed table that the 5-seed one above it superseded, same configs (that command trains them): "
        "every config loads and passes validate_config",
    ),
    Rule(
        r"python benchmarks/compare_methods\.py ",
        RUN,
        "trains each config at a tiny size, seed 0 only",
        r"\| config \| seeds \|",
    ),
    Rule(
        r"python benchmarks/shape_probe\.py ",
        RUN,
        "probes the run an earlier command trained, on 64 test images",
        r"image shape by nearest class mean",
    ),
    Rule(r"python -m launch\.local ", RUN, "trains the [--only] runs of the sweep at a tiny size", r"\| "),
    Rule(r"python -m launch\.sweep ", RUN, "lists or summarises the sweep", r"\S"),
)


def rule_of(command: Command) -> Rule | None:
    text = " ".join(command.argv)
    return next((rule for rule in RULES if re.match(rule.form, text)), None)


def action_of(command: Command) -> str | None:
    rule = rule_of(command)
    return rule.action if rule else None


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
    run it starts from (config.init_from.workdir), which this check has not trained."""
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
            assert "init_from" in str(error), f"{spec}: {error}"


@pytest.mark.parametrize("command", _checked_commands(SKIP))
def test_documented_commands_skipped(command):
    pytest.skip(rule_of(command).reason)
