"""Train or evaluate a contrastive model described by a config file.

python main.py --config=configs/laclip.py --workdir=runs/laclip
python main.py --config=configs/clip.py:size=B/16 --workdir=runs/b16 --config.batch_size=4096
python main.py --config=configs/laclip.py --workdir=runs/laclip --mode=eval   # evaluate the latest checkpoint
python main.py --config=configs/clip.py:size=B/16 --workdir=/tmp/dry --dry_run   # compile for 256 devices, print memory
python main.py --config=configs/lm.py --workdir=runs/lm --mode=generate --prompt="there is a"   # a language model
python main.py --config=configs/pints.py --workdir=runs/pints --mode=export   # a Hugging Face folder in runs/pints/hf
"""

from __future__ import annotations

import faulthandler
import logging as pylogging
import os
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from configs.errors import ConfigError
from configs.extras import missing_extra
from launch.command_line import parse_flags
from training.validation import validate_config, validate_workdir

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, optionally with ':arg=value,...'.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, logs and the tokenizer go.")
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "generate", "export"],
    "train: train (resuming) and evaluate; eval: evaluate the latest checkpoint; generate: continue --prompt with a "
    "language model's latest checkpoint (config.generation); export: write the latest checkpoint as a Hugging Face "
    "folder (--export_dir).",
)
_EXPORT_DIR = flags.DEFINE_string("export_dir", "", "With --mode=export: the folder to write ('' = <workdir>/hf).")
_PROMPT = flags.DEFINE_multi_string("prompt", [], "With --mode=generate: text to continue (repeat for several).")
_EVAL_DATA = flags.DEFINE_list(
    "eval_data", [], "With --mode=eval: extra labelled images to evaluate on, .npz files or class folders."
)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run",
    False,
    "Compile the train step for config.dry_run.devices fake devices, print per-device memory, run nothing.",
)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(pylogging.Filter):
    """Keeps orbax's per-save INFO chatter out of the training log; its warnings still show."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    del argv
    config, workdir = _CONFIG.value, _WORKDIR.value
    try:
        validate_config(config)
        if _PROMPT.value and _MODE.value != "generate":
            raise ConfigError("--prompt is read only by --mode=generate; add --mode=generate or drop --prompt.")
        if _MODE.value == "generate" and not os.path.isdir(workdir):
            raise ConfigError(f"Workdir {workdir!r} does not exist; pass the --workdir of a trained language model.")
        if _EVAL_DATA.value and _MODE.value != "eval":
            raise ConfigError("--eval_data is read only by --mode=eval; add --mode=eval or drop --eval_data.")
        if _MODE.value in ("eval", "export") and not os.path.isdir(workdir):
            raise ConfigError(f"Workdir {workdir!r} does not exist; pass the --workdir of a trained run.")
        if _EXPORT_DIR.value and _MODE.value != "export":
            raise ConfigError("--export_dir is read only by --mode=export; add --mode=export or drop --export_dir.")
        validate_workdir(workdir)
        if missing := missing_extra(config, _MODE.value):
            raise ConfigError(missing)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    if _DRY_RUN.value:
        return dry_run(config)
    if _MODE.value == "eval":
        return evaluate(config, workdir)
    if _MODE.value == "generate":
        return generate(config, workdir, _PROMPT.value)
    if _MODE.value == "export":
        return export(config, workdir, _EXPORT_DIR.value)
    logging.get_absl_handler().use_absl_log_file("train", workdir)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    logging.set_stderrthreshold(logging.INFO)
    # A crash below Python (a segfault or abort in a native library) kills the process before any
    # handler runs: faulthandler still writes "Fatal Python error: ..." and the Python stack to train.INFO.
    faulthandler.enable(file=logging.get_absl_handler().python_handler.stream)
    import jax

    from training.distributed import maybe_initialize
    from training.guards import RunStopped
    from training.loop import train_and_evaluate  # imported late: jax starts only for a valid config
    from training.run_marker import RunMarker

    claimed = None  # the RunMarker this process holds, released on any end it sees (training/run_marker.py)
    try:  # problems found once jax is up: mesh divisibility, checkpoint shapes, runs of non-finite steps
        maybe_initialize(config)  # before anything starts jax's backend
        marker = RunMarker(workdir, jax.process_index())
        notice = marker.claim()  # refuses a second live run in the workdir
        claimed = marker
        if notice:  # the previous process here was killed by SIGKILL (the OOM killer) with no message
            logging.warning(notice)
        train_and_evaluate(config, workdir)
    except ConfigError as e:
        _fail(str(e))
    except RunStopped as e:  # an exception in the loop, a data worker or a checkpoint write; Ctrl-C
        _fail(str(e), None if isinstance(e.__cause__, ConfigError) else e.__cause__)
    finally:  # only a kill from outside leaves the marker behind
        if claimed is not None:
            claimed.release()
    logging.info("Logs in %s", os.path.abspath(workdir))


def _fail(message: str, cause: BaseException | None = None) -> None:
    """Ends the run with one line `error: message` on stderr and in train.INFO (there with the traceback)."""
    logging.set_stderrthreshold(logging.FATAL)  # the log file only: stderr gets the line below, once
    if cause is not None:
        logging.error("".join(traceback.format_exception(cause)))
    logging.error("error: %s", message)
    logging.flush()
    sys.exit(f"error: {message}")


def dry_run(config) -> None:
    """--dry_run: compile the train step on fake CPU devices and check it fits config.dry_run.device_memory_gib."""
    from training.dry_run import dry_run as compile_and_measure
    from training.dry_run import use_fake_devices

    use_fake_devices(config.dry_run.devices)
    try:
        compile_and_measure(config)
    except (ConfigError, ValueError) as e:
        sys.exit(f"error: {e}")


def evaluate(config, workdir: str) -> None:
    """--mode=eval: the evaluation suite on the latest checkpoint, no training."""
    logging.get_absl_handler().use_absl_log_file("eval", workdir)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    logging.set_stderrthreshold(logging.INFO)
    from evaluation.run import evaluate_checkpoint  # imported late: jax starts only for a valid config

    try:
        outcome = evaluate_checkpoint(config, workdir, _EVAL_DATA.value)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    print(outcome["table"], flush=True)
    print(f"Results in {os.path.abspath(outcome['output_dir'])}", flush=True)
    print(f"Report: {os.path.abspath(outcome['report'])}", flush=True)


def export(config, workdir: str, folder: str) -> None:
    """--mode=export: the latest checkpoint as a Hugging Face folder (training/export.py)."""
    from training.export import export_run  # imported late: jax starts only for a valid config

    try:
        folder, kind, step = export_run(config, workdir, folder)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    print(f"Step {step} of {workdir} written to {os.path.abspath(folder)} ({kind}).", flush=True)


def generate(config, workdir: str, prompts: list[str]) -> None:
    """--mode=generate: each prompt and its continuation, one per line."""
    from evaluation.generate import generate_text  # imported late: jax starts only for a valid config

    try:
        texts = generate_text(config, workdir, prompts)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    print("\n".join(texts), flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
