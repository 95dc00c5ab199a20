"""Where a compiled step's device time goes: a profiler trace summed per kind of HLO operation.

    ops = categorize_hlo(jitted.lower(*args).compile().as_text())
    with jax.profiler.trace(log_dir):
        ...  # run the step n times
    by_category, by_op = summarize_trace(log_dir, ops)   # summed seconds, largest first

Each launched HLO instruction is put in one category from the optimised HLO: `matmul` (dots, cuBLAS
/ cuDNN / Triton GEMMs, and any fusion around a dot: XLA fuses a matmul with its epilogue),
`convolution`, `attention` (cuDNN's fused flash attention), `reduction` (any other fusion with a
reduce: softmax sums, LayerNorm statistics, gradient sums), `elementwise` (the other fusions),
`copy/transpose`, `collective`, else `other`. A trace event names its op by its `hlo_op` stat (a
CPU's thunks on the host threads; a GPU's kernels on the device streams, where a kernel without the
stat is matched by name, as XLA names a fusion's kernel after it); time no op claims is reported
as `unattributed`, and kernels run inside an XLA:GPU command buffer (a CUDA graph), which carry the
buffer's name instead of their op's, as `command buffer`: `split_command_buffers()` before the backend
starts turns command buffers off so that each kernel is attributed (benchmarks/train_step.py does so
under --profile_dir).
"""

from __future__ import annotations

import collections
import glob
import os
import re
from typing import NamedTuple

from jax._src import xla_bridge
from jax.profiler import ProfileData

from training import hlo_text


class Op(NamedTuple):
    category: str
    source: str  # the JAX operation it came from (HLO metadata op_name), e.g. "jit(step)/jvp(...)/dot_general"


def categorize_hlo(hlo: str) -> dict[str, Op]:
    """{instruction name: Op} for every instruction of an optimised HLO module's text."""
    computations = hlo_text.parse(hlo).computations
    memo: dict[tuple[str, tuple[str, ...]], bool] = {}

    def contains(computation: str, opcodes: tuple[str, ...]) -> bool:
        """Whether `computation`, or one it calls, has an instruction with one of `opcodes`."""
        key = (computation, opcodes)
        if key not in memo:
            memo[key] = False  # guards against cycles while recursing
            memo[key] = any(
                i.opcode in opcodes or any(contains(c, opcodes) for c in hlo_text.called(i.rest))
                for i in computations.get(computation, ())
            )
        return memo[key]

    def category(name: str, opcode: str, rest: str) -> str:
        # Library calls and Triton GEMMs say what they are in their target or backend config (not in their
        # operands, which may be named after another op, e.g. a loop fusion reading "%gemm_fusion.2").
        target = re.search(r'custom_call_target="([^"]+)"', rest)
        config = re.search(r"backend_config=(.*)", rest)
        library = (target.group(1) if target else "").lower() + (config.group(1) if config else "").lower()
        called = hlo_text.called(rest)
        if "fmha" in library or "flash" in library:
            return "attention"
        if opcode == "convolution" or "conv" in library:
            return "convolution"
        if opcode == "dot" or "gemm" in library or "matmul" in library:
            return "matmul"
        if opcode == "fusion" and any(contains(c, ("dot", "convolution")) for c in called):
            return "matmul"
        if opcode == "fusion" and any(contains(c, ("reduce",)) for c in called):
            return "reduction"
        if opcode in ("copy", "transpose", "copy-start", "copy-done") or "transpose" in name or "copy" in name:
            return "copy/transpose"
        if opcode == "fusion":
            return "elementwise"
        if opcode.replace("-start", "").replace("-done", "") in hlo_text.COLLECTIVE_OPCODES:
            return "collective"
        return "other"

    ops = {}
    for instructions in computations.values():
        for name, _, opcode, rest in instructions:
            source = re.search(r'op_name="([^"]*)"', rest)
            ops[name] = Op(category(name, opcode, rest), source.group(1) if source else "")
    return ops


# XLA:GPU runs runs of kernels (fusions, cuBLAS GEMMs, cuDNN calls) as CUDA graphs by default; their trace
# events carry the graph's name, not their ops' (openxla/xprof#3070: an H200 profile of ViT-B/16 left 34.6%
# of device time unattributed and cuBLAS's GEMMs unseen). This empty list of command types turns them off.
SPLIT_COMMAND_BUFFERS_FLAG = "--xla_gpu_enable_command_buffer="


def split_command_buffers() -> None:
    """Adds SPLIT_COMMAND_BUFFERS_FLAG to XLA_FLAGS; call before JAX starts its backend (no effect after,
    hence the error). Kernels then launch one by one: a traced step may run slower than an untraced one."""
    if getattr(xla_bridge, "backends_are_initialized", lambda: False)():  # private: absent, no check
        raise RuntimeError("split_command_buffers() must run before JAX's first computation or jax.devices().")
    flags = os.environ.get("XLA_FLAGS", "").split()
    if SPLIT_COMMAND_BUFFERS_FLAG not in flags:
        os.environ["XLA_FLAGS"] = " ".join([*flags, SPLIT_COMMAND_BUFFERS_FLAG])


class TraceEvent(NamedTuple):
    hlo_op: str  # the op's name from the event's `hlo_op` stat; "" when it has none
    kernel: str  # on device planes, the event's own name (a kernel's, a copy's); "" on the host
    seconds: float


def trace_events(log_dir: str) -> list[TraceEvent]:
    """The events of the newest trace under `log_dir` that ran ops: on device planes (/device:GPU:0,
    TPU) every event; without device planes (a CPU backend runs ops on the host) those with `hlo_op`."""
    paths = sorted(glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"No *.xplane.pb trace under {log_dir!r}; run the step inside jax.profiler.trace.")
    planes = list(ProfileData.from_file(paths[-1]).planes)
    devices = [p for p in planes if p.name.startswith("/device:") and "CUSTOM" not in p.name]
    events = []
    for plane in devices or [p for p in planes if p.name.startswith("/host:")]:
        for line in plane.lines:
            for event in line.events:
                op = str(dict(event.stats).get("hlo_op", ""))
                if op or devices:
                    events.append(TraceEvent(op, event.name if devices else "", event.duration_ns / 1e9))
    return events


def _kernel_name(name: str) -> str:
    """XLA:GPU names a fusion's kernel after its HLO instruction, with '.' and '-' as '_'."""
    return re.sub(r"[.\-]", "_", name)


def summarize_trace(log_dir: str, ops: dict[str, Op]) -> tuple[list[tuple[str, float, int]], list[tuple[str, float]]]:
    """Over the traced events (trace only the program that `ops`, from categorize_hlo, describes):
    ([(category, summed seconds, distinct ops)], [(op name, summed seconds)]), each largest first. An
    event is matched by its `hlo_op` (or that path's last part) or its kernel's name; events that match
    no op are summed rather than dropped: as "command buffer" when they name one (a kernel in a CUDA
    graph), else as "unattributed" (a library kernel without XLA's annotation, a host-device copy)."""
    kernels = {_kernel_name(name): name for name in ops}
    per_op, unattributed, unknown, in_buffers, buffers = collections.Counter(), 0.0, set(), 0.0, set()
    for event in trace_events(log_dir):
        names = [n for n in (event.hlo_op, event.hlo_op.rsplit("/", 1)[-1], event.kernel) if n]
        op = next((kernels[_kernel_name(n)] for n in names if _kernel_name(n) in kernels), None)
        if op:
            per_op[op] += event.seconds
        elif any(n.startswith("command_buffer") for n in names):
            in_buffers += event.seconds
            buffers.add(names[0])
        else:
            unattributed += event.seconds
            unknown.add(names[0])
    seconds, distinct = collections.Counter(), collections.defaultdict(set)
    for op, duration in per_op.items():
        seconds[ops[op].category] += duration
        distinct[ops[op].category].add(op)
    rows = [(c, total, len(distinct[c])) for c, total in seconds.most_common()]
    if in_buffers:
        rows.append(("command buffer", in_buffers, len(buffers)))
    if unattributed:
        rows.append(("unattributed", unattributed, len(unknown)))
    return rows, per_op.most_common()


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
