"""CI's front door: the README's quick-start command, as a newcomer runs it, on a clean virtualenv.

The command `pip install ... && python main.py ...` is read from README.md, not copied here, so
the README cannot drift from what CI proves. The install step runs alone in a fresh `python3 -m
venv` (nothing of the CI environment leaks in); the training command then runs with only the step
count and the workdir overridden, and must end with its summary table.

    python .ci/front_door.py [--steps=20]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quick_start_command(readme_path: str) -> tuple[str, list[str]]:
    """(install step, main command's argv) of the first ```bash block under '## Quick start'."""
    with open(readme_path, encoding="utf-8") as f:
        section = f.read().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ").strip()
    install, _, run = block.partition(" && ")
    argv = shlex.split(run)
    if not install.startswith("pip install") or argv[:2] != ["python", "main.py"]:
        raise SystemExit(f"README quick start is not `pip install ... && python main.py ...`: {block!r}")
    return install, argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="config.total_steps for the run")
    args = parser.parse_args()
    install, argv = quick_start_command(os.path.join(ROOT, "README.md"))
    with tempfile.TemporaryDirectory(prefix="front_door_") as tmp:
        venv = os.path.join(tmp, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env["PATH"]
        start = time.time()
        print(f"$ {install}   # in a fresh virtualenv", flush=True)
        subprocess.run(["bash", "-c", install + " -q"], cwd=ROOT, env=env, check=True)
        install_s = time.time() - start
        # Only the budget and the workdir change; every other setting is the README's.
        workdir = os.path.join(tmp, "run")
        argv = [a if not a.startswith("--workdir=") else f"--workdir={workdir}" for a in argv]
        argv += [f"--config.total_steps={args.steps}", f"--config.eval_every_steps={args.steps}"]
        print("$ " + shlex.join(argv), flush=True)
        start = time.time()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        sys.stdout.write(done.stdout[-3000:])
        if done.returncode != 0 or "zero-shot" not in done.stdout:
            sys.stderr.write(done.stderr[-5000:])
            raise SystemExit(f"front door failed: the README's quick start exited with {done.returncode}")
        print(f"front door ok: install {install_s:.0f} s, {args.steps} steps + evaluation {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
