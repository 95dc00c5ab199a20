"""The training loop: build everything from the config, train, evaluate, checkpoint, summarise."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from evaluation.evaluators import Evaluators
from input_pipeline.pipeline import make_train_iterator
from input_pipeline.skipping import ProblemCounter
from input_pipeline.tokenizer import get_tokenizer
from interop.pretrained import init_state_from_pretrained
from losses.objectives import get_objective
from models.two_tower import build_model
from training import caption_task
from training import mesh as mesh_lib
from training.checkpointing import Checkpointer, init_params_from
from training.guards import NonFiniteGuard, PreemptionNotice, stopped_run
from training.metric_writers import MetricWriter
from training.objective_inputs import prepare_inputs
from training.optimizer import learning_rate_schedule, make_optimizer
from training.partitioning import (
    abstract_params,
    create_train_state,
    jit_train_step,
    mesh_from_config,
    state_shardings,
)
from training.step_timer import StepTimer
from training.summary import format_summary
from training.task import make_task
from training.train_state import TrainState
from training.validation import validate_batch_division


def _write_run_info(config: ml_collections.ConfigDict, workdir: str, mesh) -> None:
    info = {
        "config": config.to_dict(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        "mesh": dict(mesh.shape),
    }
    with open(os.path.join(workdir, "run_info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, default=str)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns the final summary."""
    os.makedirs(workdir, exist_ok=True)
    preemption = PreemptionNotice()  # from here on SIGTERM means: finish this step, checkpoint, return
    start_time = time.time()
    is_chief = jax.process_index() == 0
    mesh = mesh_from_config(config)
    validate_batch_division(
        config.batch_size, mesh_lib.batch_device_count(mesh), jax.process_count(), config.microbatches
    )
    if is_chief:
        _write_run_info(config, workdir, mesh)

    task = make_task(config)  # image-text, or text only (SimCSE, CCP): training/task.py
    tokenizer_path = config.text.tokenizer_path
    text_source = _tokenizer_source(config)
    inherited = os.path.join(text_source, "tokenizer.model") if text_source else ""
    if not tokenizer_path and config.text.tokenizer == "sentencepiece" and os.path.isfile(inherited):
        tokenizer_path = inherited
    tokenizer = get_tokenizer(
        tokenizer_path, workdir, task.corpus(), config.text.vocab_size, config.text.tokenizer, task.symbols
    )
    if tokenizer_path == inherited and inherited and not os.path.isfile(os.path.join(workdir, "tokenizer.model")):
        shutil.copyfile(inherited, os.path.join(workdir, "tokenizer.model"))  # evaluation tools read the run's own
    model = build_model(config, tokenizer.vocab_size)
    evaluator = Evaluators(config, model, tokenizer)  # config.evals (evaluation/eval_types.py): data read here
    logging.info("%s", evaluator.describe(config))
    objective = get_objective(config.objective)
    optimizer = make_optimizer(config)
    schedule = learning_rate_schedule(config)

    # What the objective needs beyond the batch (a frozen embedder, memory-bank images), read here on the
    # host so that the loss stays pure: training/objective_inputs.py.
    inputs = prepare_inputs(config, abstract_params(config, model), tokenizer)
    _, shardings = state_shardings(config, model, optimizer, objective, mesh, inputs)
    state = create_train_state(config, model, optimizer, objective, mesh, inputs=inputs)
    checkpointer = Checkpointer(workdir, config.keep_checkpoints)
    data_iter = make_train_iterator(
        task.source,
        task.transform(tokenizer),
        global_batch_size=config.batch_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        worker_count=config.data.worker_count,
        read_threads=config.data.read_threads,
    )
    if checkpointer.latest_step() is not None:
        state, data_state = checkpointer.restore(jax.tree.map(_abstract, state))
        data_iter.set_state(data_state)
        logging.info("Resumed from step %d in %s", int(state.step), checkpointer.directory)
    elif caption_task.reads_language_model(config):
        # the trained language model (a captioner's CLIP run stays outside the params)
        state = caption_task.with_language_model(config, state)
        if config.model.kind == "mend" and config.mend.distiller_init == "lm":
            state = caption_task.with_distiller_from_language_model(config, state)
    elif config.init_from.pretrained:  # PyTorch-ecosystem weights, converted (interop/pretrained.py)
        state = init_state_from_pretrained(config, state, objective, inputs)
    elif config.init_from.workdir:
        state = _init_from_other_run(config, state, objective, shardings.extra, inputs)

    step_fn = jit_train_step(config, model, objective, optimizer, schedule, mesh, shardings)
    writer = MetricWriter(workdir, enabled=is_chief)

    first_step = int(state.step)
    pending: list[dict] = []
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    timer = StepTimer(first_step)  # steps/s without evals, checkpoints and compilation; the data-wait share
    guard = NonFiniteGuard(config.max_consecutive_skipped_steps)
    data_problems = ProblemCounter()  # skipped and repaired examples: train/data_* metrics
    step = first_step
    try:
        for step in range(first_step + 1, config.total_steps + 1):
            with timer.waiting_for_data():
                batch = mesh_lib.global_batch(data_problems.take(next(data_iter)), mesh)
            with jax.set_mesh(mesh):  # distributed losses shard_map over the trainer's mesh
                state, metrics = step_fn(state, batch)
            if step == first_step + 1:
                timer.restart(step)  # the first step compiled the program: rates start after it
            pending.append(metrics)
            guard.record(metrics["skipped"])
            last = step == config.total_steps
            if step % config.log_every_steps == 0 or last:
                train_metrics = {k: float(np.mean(v)) for k, v in jax.device_get(_stack(pending)).items()}
                pending = []
                rates = timer.interval(step)  # {} for an interval of the first step alone
                if rates:
                    rates["examples_per_s"] = rates["steps_per_s"] * config.batch_size
                train_metrics.update(rates)
                train_metrics["host_peak_memory_gib"] = _peak_host_memory_gib()  # read back after an OOM kill
                train_metrics.update(data_problems.interval_metrics())
                writer.write(step, {f"train/{k}": v for k, v in train_metrics.items()})
                logging.info(
                    "step %d/%d | loss %.4f%s", step, config.total_steps, train_metrics["loss"],
                    _rates_text(rates, config.total_steps - step),
                )  # fmt: skip
                guard.check(step, checkpointer)
            if step % config.eval_every_steps == 0 or last:
                with timer.paused():
                    eval_metrics = evaluator.evaluate(state.params)
                writer.write(step, {f"eval/{k}": v for k, v in eval_metrics.items()})
                logging.info("eval at step %d: %s", step, _short(eval_metrics))
            if (step % config.checkpoint_every_steps == 0 or last) and guard.check(step, checkpointer):
                with timer.paused():
                    checkpointer.save(state, data_iter.get_state())
            if preemption.requested and not last:
                return _stop_for_preemption(state, data_iter.get_state(), checkpointer, writer, preemption)
    except (Exception, KeyboardInterrupt) as error:  # one clear line in train.INFO and on stderr (main.py)
        raise stopped_run(error, step, checkpointer) from error
    preemption.close()
    checkpointer.wait()
    finished_before = first_step >= config.total_steps
    if finished_before:  # nothing left to train: evaluate what was restored
        eval_metrics = evaluator.evaluate(state.params)
    checkpointer.close()
    writer.close()

    # Rerunning a finished run (as benchmarks/compare_methods.py does) re-evaluates it but keeps the
    # training's own final loss and wall time from the summary it wrote then.
    previous = _read_summary(workdir) if finished_before else {}
    summary = {
        "step": int(state.step),
        "final_loss": train_metrics.get("loss", previous.get("final_loss")),
        "eval": eval_metrics,
        "wall_time_s": previous.get("wall_time_s", time.time() - start_time),
        "checkpoints": checkpointer.directory,
        "metrics": writer.jsonl_path,
        "tensorboard": writer.tensorboard_dir,
        "workdir": os.path.abspath(workdir),
    }
    if is_chief:
        with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        print(format_summary(config, summary), flush=True)
    return summary


def _tokenizer_source(config: ml_collections.ConfigDict) -> str:
    """The run whose tokenizer this one reads text with ('' for its own): a run initialised from another reads its
    token ids; a captioner's and MEND's text is their language model's, and SALT's the small model's it distils
    from."""
    if caption_task.reads_language_model(config):
        return caption_task.lm_workdir(config)
    if config.objective == "salt":
        return config.salt.teacher_workdir
    return config.init_from.workdir


def _rates_text(rates: dict[str, float], remaining_steps: int) -> str:
    """The log line's rates, as in "... | 4.21 steps/s | 539 examples/s | data wait 12% | ETA 3m10s"; "" without."""
    if not rates:
        return ""
    eta = _duration(remaining_steps / max(rates["steps_per_s"], 1e-9))
    return (
        f" | {rates['steps_per_s']:.2f} steps/s | {rates['examples_per_s']:.0f} examples/s"
        f" | data wait {rates['data_wait_fraction']:.0%} | ETA {eta}"
    )


def _read_summary(workdir: str) -> dict:
    """The summary.json a finished run wrote, or {} when there is none (or it is unreadable)."""
    try:
        with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def _init_from_other_run(
    config: ml_collections.ConfigDict, state: TrainState, objective, shardings, inputs: dict
) -> TrainState:
    """A fresh state whose params under config.init_from.param_prefixes come from another run's checkpoint,
    and the objective's extra state rebuilt from them (and its host `inputs`)."""
    source = config.init_from.workdir
    params, copied, step = init_params_from(source, state.params, config.init_from.param_prefixes)
    init_extra = jax.jit(lambda p, i: objective.init_extra(p, config, i), out_shardings=shardings)
    logging.info("Initialised %d parameters under %s from step %d of %s", len(copied),
                 list(config.init_from.param_prefixes), step, source)  # fmt: skip
    return state.replace(params=params, extra=init_extra(params, inputs))


def _stop_for_preemption(state, data_state, checkpointer, writer, preemption) -> dict:
    """After SIGTERM: checkpoint this step, wait for every write, and return without evaluating."""
    checkpointer.save(state, data_state)
    checkpointer.wait()
    checkpointer.close()
    writer.close()
    preemption.close()
    step = int(state.step)
    logging.info("Preempted (signal %d) at step %d: checkpoint saved in %s %.1f s after the notice; "
                 "rerun the same command to resume.", preemption.signal, step, checkpointer.directory,
                 time.monotonic() - preemption.received_at)  # fmt: skip
    return {"step": step, "preempted": True, "checkpoints": checkpointer.directory}


def _peak_host_memory_gib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def _abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)


def _stack(metrics: list[dict]) -> dict:
    return {k: jnp.stack([m[k] for m in metrics]) for k in metrics[0]}


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _short(metrics: dict[str, float]) -> str:
    keys = (
        "zero_shot/shape_colour", "zero_shot/shape", "zero_shot/colour", "retrieval/image_to_text_R@1", "sts/avg",
        "dialog/intent_1shot", "dialog/intent_5shot", "dialog/intent_probe", "dialog/slot_f1",
        "segmentation/miou", "segmentation/clip_miou",
        "video/motion", "video/motion_mean_frames", "video/shape", "video/colour",
        "captioning/colour_shape", "captioning/text_colour_shape", "captioning/clip_score", "language/perplexity",
        "preference/misaligned_rate", "preference/adversarial_rate", "preference/aligned_loss",
        "fact_probe/accuracy", "fact_probe/clean_loss", "minimal_pairs/accuracy", "minimal_pairs/pseudo_perplexity",
        "prompt/accuracy", "incremental/accuracy", "incremental/old", "edits/accuracy", "edits/iou", "edits/preference",
    )  # fmt: skip
    return ", ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics)
