"""Per-device temporaries of every image-text objective's compiled train step at a large global batch.

    python benchmarks/loss_memory.py                       # batch 65,536: the table in BENCHMARKS.md
    python benchmarks/loss_memory.py --batch=256 --objectives=clip,dreamlip

Compiles (runs nothing) the whole train step of each objective as `main.py --dry_run` does
(training/dry_run.py: XLA's memory analysis of the sharded step), with `dense` and `tiled` on one
device and `ring_tiled` on 8 fake CPU devices, one subprocess per device count (the count is fixed
when jax starts; the two run side by side). The towers are shrunk to one block of width 16 on 8 px
images and 8 tokens of a 64-token vocabulary, so that the loss's B x B terms, not the towers, set the
memory; the embedding width stays the config's.
Objectives that declare themselves dense-only (losses/objectives.py) show "dense only".
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere
GIB = 2**30
# Each image-text objective, the config it is measured with, and the other configs that train it.
OBJECTIVES = {
    "clip": ("clip", "laclip, lit, clip_continued"),
    "siglip": ("siglip", ""),
    "dreamlip": ("dreamlip", ""),
    "alip": ("alip", ""),
    "protoclip": ("protoclip", ""),
    "clip_hard_negatives": ("clip_hard_negatives", ""),
    "degla": ("degla", ""),
    "clip_refine": ("clip_refine", ""),
    "proclip": ("proclip", "proclip_stage1"),
    "uclip": ("uclip", ""),
}
RUNS = (("dense", 1), ("tiled", 1), ("ring_tiled", 8))  # (loss implementation, devices)
TINY_TOWERS = {
    "data.image_size": 8,
    "model.image.patch_size": 8,
    "model.image.conv_stem_depth": 0,
    "model.image.width": 16,
    "model.image.heads": 1,
    "model.image.depth": 1,
    "model.text.width": 16,
    "model.text.heads": 1,
    "model.text.depth": 1,
    "model.text.max_len": 8,
    "text.vocab_size": 64,
}


def measure(objective: str, implementation: str, devices: int, batch: int) -> dict:
    """Compiles one train step in this process (jax started with at least `devices` devices): GiB per device."""
    from losses.objectives import objective_implementations
    from training.dry_run import dry_run

    config = importlib.import_module(f"configs.{OBJECTIVES[objective][0]}").get_config()
    config.update_from_flattened_dict(
        {
            **TINY_TOWERS,
            "batch_size": batch,
            "loss.implementation": implementation,
            "dry_run.devices": devices,
            "dry_run.device_memory_gib": 1e9,  # measure, never refuse
            "mesh.data": devices,
        }
    )
    row = {"objective": objective, "implementation": implementation, "devices": devices}
    row["embed_dim"] = config.model.embed_dim
    row["supported"] = implementation in objective_implementations(config.objective, config)[0]
    if not row["supported"]:
        return row
    with contextlib.redirect_stdout(io.StringIO()):  # dry_run prints its own table per compile
        report = dry_run(config)
    return {
        **row,
        "temporaries_gib": report["activations_and_temporaries_gib"],
        "peak_gib": report["peak_gib"],
        "compile_s": report["compile_s"],
    }


def start_worker(devices: int, implementations: list[str], objectives: list[str], batch: int) -> subprocess.Popen:
    """A subprocess with jax on `devices` CPU devices that compiles and prints one ROW line per run."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, os.path.abspath(__file__), "--worker", f"--devices={devices}", f"--batch={batch}"]
    command += [f"--implementations={','.join(implementations)}", f"--objectives={','.join(objectives)}"]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def worker_rows(worker: subprocess.Popen) -> list[dict]:
    """The rows a worker printed; if it died (a compile killed for memory), those before, and a note."""
    stdout, stderr = worker.communicate()
    rows = [json.loads(line[len("ROW ") :]) for line in stdout.splitlines() if line.startswith("ROW ")]
    if worker.returncode:
        print(f"A worker ended with status {worker.returncode} after {len(rows)} rows; the rest show '-'.")
        print(stderr[-2000:], file=sys.stderr)
    return rows


def format_table(rows: list[dict], batch: int) -> str:
    """Markdown: per objective, GiB of temporaries per device by run, and dense's multiple of each."""
    by_key = {(r["objective"], r["implementation"], r["devices"]): r for r in rows}
    header = ["objective (also trains)", "d"] + [f"{impl}, {n} device{'s' * (n > 1)}" for impl, n in RUNS]
    header += [f"dense / {impl}" for impl, _ in RUNS[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for objective, (_, also) in OBJECTIVES.items():
        cells = [r for r in (by_key.get((objective, impl, n)) for impl, n in RUNS)]
        if not any(cells):
            continue
        name = f"{objective} ({also})" if also else objective
        dense = cells[0]
        values = [f"{c['temporaries_gib']:.3f}" if c and c["supported"] else "dense only" if c else "-" for c in cells]
        ratios = [
            f"{dense['temporaries_gib'] / c['temporaries_gib']:.0f}x" if c and c["supported"] and dense else "-"
            for c in cells[1:]
        ]
        embed_dim = next(c["embed_dim"] for c in cells if c)
        lines.append("| " + " | ".join([name, str(embed_dim), *values, *ratios]) + " |")
    return f"Global batch {batch:,}: GiB of XLA temporaries per device (compiled train step)\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=65_536, help="global batch size")
    parser.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated, from OBJECTIVES")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--implementations", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    objectives = args.objectives.split(",")
    unknown = sorted(set(objectives) - set(OBJECTIVES))
    if unknown:
        parser.error(f"unknown objectives {unknown}; use some of {list(OBJECTIVES)}")
    if args.worker:
        for objective in objectives:
            for implementation in args.implementations.split(","):
                print("ROW " + json.dumps(measure(objective, implementation, args.devices, args.batch)), flush=True)
        return
    workers = [  # one per device count, side by side: each compiles alone
        start_worker(devices, [impl for impl, n in RUNS if n == devices], objectives, args.batch)
        for devices in sorted({n for _, n in RUNS})
    ]
    rows = [row for worker in workers for row in worker_rows(worker)]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    print(format_table(rows, args.batch))


if __name__ == "__main__":
    main()
