"""Launches a config's sweep on Cloud TPU with XManager: one Vertex AI job per run, one experiment.

    pip install xmanager   # and gcloud auth application-default login; GOOGLE_CLOUD_PROJECT set
    xmanager launch launch/xmanager_tpu.py -- --config=configs/clip.py:size=B/16 \
        --workdir=/gcs/my-bucket/clip_sweep --tpu=v3 --tpu_cores=8 [--only=0,2] [-- --config.total_steps=20000]

XManager builds a container from this repository (installing it with `jax[tpu]`), pushes it, and
starts each run of the config's get_hyper as `python main.py --config=... --workdir=<workdir>/<name>`
with the run's overrides (`python -m launch.sweep --list` shows them). Vertex AI mounts Cloud
Storage buckets under /gcs/, so a /gcs/<bucket>/... workdir keeps checkpoints, metrics and
summary.json, and a preempted run resumes when relaunched. XManager's Vertex AI backend offers TPU
v2 and v3 hosts; for a multi-host pod slice use the gcloud commands of docs/scaling.md instead.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from configs.errors import ConfigError
from launch import sweep

try:
    from xmanager import xm, xm_local
except ImportError:  # optional: only this launcher needs it
    xm = xm_local = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TPU_TYPES = ("v2", "v3")  # the Cloud TPU types of XManager's Vertex AI backend

_CONFIG = flags.DEFINE_string("config", None, "Config file with get_hyper, optionally with ':arg=val'.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Parent folder of the runs' workdirs, e.g. /gcs/<bucket>/<sweep>.")
_TPU = flags.DEFINE_enum("tpu", "v3", list(TPU_TYPES), "Cloud TPU generation.")
_TPU_CORES = flags.DEFINE_integer("tpu_cores", 8, "TPU cores per run (8: one TPU host).")
_ONLY = flags.DEFINE_list("only", [], "Run indices to launch (default: all).")
_BASE_IMAGE = flags.DEFINE_string("base_image", "python:3.11", "Docker image the container starts from.")
flags.mark_flags_as_required(["config", "workdir"])


def docker_instructions(directory: str) -> list[str]:
    """Dockerfile steps: this repository, installed with jax's TPU runtime, as the working directory."""
    return [
        "ENV LANG=C.UTF-8",
        f"COPY {directory}/ /workdir",
        "WORKDIR /workdir",
        "RUN python -m pip install --upgrade pip && python -m pip install -e . 'jax[tpu]'",
    ]


def job_args(spec: str, run: sweep.Run, workdir: str, common_flags: list[str]) -> list[str]:
    """main.py's flags for one run: the same command line as launch/local.py's."""
    return sweep.main_flags(spec, run, workdir, common_flags)


def main(argv: list[str]) -> None:
    if xm is None:
        sys.exit(
            "error: launch/xmanager_tpu.py needs the xmanager package; `pip install xmanager`, or run the sweep "
            "with `python -m launch.local` or the gcloud commands of docs/scaling.md."
        )
    common = [flag for flag in argv[1:] if flag != "--"]
    try:
        runs = sweep.expand(_CONFIG.value, common)
        runs = sweep.select(runs, ",".join(_ONLY.value))
    except ConfigError as e:
        sys.exit(f"error: {e}")
    with xm_local.create_experiment(experiment_title=f"{os.path.basename(_WORKDIR.value)}") as experiment:
        [executable] = experiment.package(
            [
                xm.python_container(
                    executor_spec=xm_local.Vertex.Spec(),
                    path=ROOT,
                    base_image=_BASE_IMAGE.value,
                    docker_instructions=docker_instructions(os.path.basename(ROOT)),
                    entrypoint=xm.ModuleName("main"),
                )
            ]
        )
        requirements = xm.JobRequirements(**{f"tpu_{_TPU.value}": _TPU_CORES.value})
        for run in runs:
            experiment.add(
                xm.Job(
                    executable=executable,
                    executor=xm_local.Vertex(requirements=requirements),
                    args=job_args(_CONFIG.value, run, _WORKDIR.value, common),
                )
            )
            print(f"[{run.index}] queued  {run.name}", flush=True)


if __name__ == "__main__":
    app.run(main)
