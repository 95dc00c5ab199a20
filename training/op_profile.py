"""Where a compiled step's device time goes: a profiler trace summed per kind of HLO operation.

    ops = categorize_hlo(jitted.lower(*args).compile().as_text())
    with jax.profiler.trace(log_dir):
        ...  # run the step n times
    by_category, by_op = summarize_trace(log_dir, ops)   # summed seconds, largest first

Each launched HLO instruction is put in one category from the optimised HLO: `matmul` (dots, cuBLAS
/ cuDNN / Triton GEMMs, and any fusion around a dot: XLA fuses a matmul with its epilogue),
`convolution`, `attention` (cuDNN's fused flash attention), `reduction` (any other fusion with a
reduce: softmax sums, LayerNorm statistics, gradient sums), `elementwise` (the other fusions),
`copy/transpose`, `collective`, else `other`. The trace's events carry the instruction's name as their `hlo_op`
stat (on a GPU one per kernel on the device's streams; on a CPU one per thunk on the host threads).
"""

from __future__ import annotations

import collections
import glob
import os
import re
from typing import NamedTuple

from jax.profiler import ProfileData

_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\((.*)$")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=\{?%?([\w.\-]+)")
_COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


def _parse(hlo_text: str) -> dict[str, list[tuple[str, str, str]]]:
    """{computation: [(instruction, opcode, rest of its line)]}."""
    computations, current = {}, None
    for line in hlo_text.splitlines():
        if current is None:
            match = _COMPUTATION.match(line)
            if match and not line.startswith((" ", "HloModule")):
                current = computations.setdefault(match.group(1), [])
        elif line.strip() == "}":
            current = None
        else:
            match = _INSTRUCTION.match(line)
            if match:
                current.append(match.groups())
    return computations


class Op(NamedTuple):
    category: str
    source: str  # the JAX operation it came from (HLO metadata op_name), e.g. "jit(step)/jvp(...)/dot_general"


def categorize_hlo(hlo_text: str) -> dict[str, Op]:
    """{instruction name: Op} for every instruction of an optimised HLO module's text."""
    computations = _parse(hlo_text)
    memo: dict[tuple[str, tuple[str, ...]], bool] = {}

    def contains(computation: str, opcodes: tuple[str, ...]) -> bool:
        """Whether `computation`, or one it calls, has an instruction with one of `opcodes`."""
        key = (computation, opcodes)
        if key not in memo:
            memo[key] = False  # guards against cycles while recursing
            memo[key] = any(
                opcode in opcodes or any(contains(c, opcodes) for c in _CALLS.findall(rest))
                for _, opcode, rest in computations.get(computation, ())
            )
        return memo[key]

    categories = {}
    for instructions in computations.values():
        for name, opcode, rest in instructions:
            target = re.search(r'custom_call_target="([^"]+)"', rest)
            target = target.group(1).lower() if target else ""
            if "fmha" in target or "flash" in target:
                category = "attention"
            elif opcode == "convolution" or "conv" in target:
                category = "convolution"
            elif opcode == "dot" or "gemm" in target or "matmul" in target or "gemm" in rest:
                category = "matmul"
            elif opcode == "fusion" and any(contains(c, ("dot", "convolution")) for c in _CALLS.findall(rest)):
                category = "matmul"
            elif opcode == "fusion" and any(contains(c, ("reduce",)) for c in _CALLS.findall(rest)):
                category = "reduction"
            elif opcode == "fusion":
                category = "elementwise"
            elif opcode in ("copy", "transpose", "copy-start", "copy-done") or "transpose" in name:
                category = "copy/transpose"
            elif opcode.replace("-start", "").replace("-done", "") in _COLLECTIVES:
                category = "collective"
            else:
                category = "other"
            source = re.search(r'op_name="([^"]*)"', rest)
            categories[name] = Op(category, source.group(1) if source else "")
    return categories


def trace_events(log_dir: str) -> list[tuple[str, float]]:
    """(hlo_op, seconds) of every event in the newest trace under `log_dir` that names an HLO op; device
    planes (/device:GPU:0, TPU) when the trace has any, else the host's (a CPU backend runs ops there)."""
    paths = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"No *.xplane.pb trace under {log_dir!r}; run the step inside jax.profiler.trace.")
    planes = list(ProfileData.from_file(paths[-1]).planes)
    devices = [p for p in planes if p.name.startswith("/device:") and "CUSTOM" not in p.name]
    events = []
    for plane in devices or [p for p in planes if p.name.startswith("/host:")]:
        for line in plane.lines:
            for event in line.events:
                op = dict(event.stats).get("hlo_op")
                if op:
                    events.append((str(op), event.duration_ns / 1e9))
    return events


def summarize_trace(log_dir: str, ops: dict[str, Op]) -> tuple[list[tuple[str, float, int]], list[tuple[str, float]]]:
    """Over the traced events of the ops in `ops` (categorize_hlo): ([(category, summed seconds, distinct
    ops)], [(op name, summed seconds)]), each largest first."""
    per_op = collections.Counter()
    for op, duration in trace_events(log_dir):
        if op in ops:
            per_op[op] += duration
    seconds, names = collections.Counter(), collections.defaultdict(set)
    for op, duration in per_op.items():
        seconds[ops[op].category] += duration
        names[ops[op].category].add(op)
    return [(c, total, len(names[c])) for c, total in seconds.most_common()], per_op.most_common()


def layer_kind(source: str) -> str:
    """A source op_name with block numbers and wrappers folded: "backward text_tower block*/mlp/fc1/dot_general"
    for every text block's fc1 weight or input gradient, so that the table sums all blocks' copies."""
    direction = "backward" if "transpose(" in source else "forward"
    path = re.sub(r"\b(jit|jvp|transpose|remat|checkpoint)\(|\)", "", source).split("/")
    path = [re.sub(r"block\d+", "block*", part) for part in path[1:] if part and not part[0].isupper()]
    return " ".join(filter(None, [direction, *path[:1], "/".join(path[1:])])) if source else "(no source recorded)"


def by_layer_kind(by_op: list[tuple[str, float]], ops: dict[str, Op]) -> list[tuple[str, float, int]]:
    """[(layer_kind, summed seconds, ops)] over summarize_trace's per-op times, largest first."""
    seconds, count = collections.Counter(), collections.Counter()
    for op, duration in by_op:
        kind = layer_kind(ops[op].source)
        seconds[kind] += duration
        count[kind] += 1
    return [(kind, total, count[kind]) for kind, total in seconds.most_common()]
