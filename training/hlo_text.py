"""The optimised HLO text of a compiled program (`compiled.as_text()`), read into computations and
instructions: what op_profile.py and collectives.py look up, without an HLO proto parser.

    module = parse(compiled.as_text())
    module.computations["main"]  # [Instruction(name, shape, opcode, rest), ...]
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*?)\s([a-z][\w\-]*)\((.*)$")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition)=\{?%?([\w.\-]+)")
_ARRAY = re.compile(r"\b([a-z]+[0-9a-z]*)\[([0-9,]*)\]")
# The opcodes of XLA's collectives (each also comes as an async "-start"/"-done" pair).
COLLECTIVE_OPCODES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")


class Instruction(NamedTuple):
    name: str
    shape: str  # its result type as written, e.g. "f32[8,16]{1,0}" or "(s32[], bf16[4]{0})"
    opcode: str
    rest: str  # operands and attributes: the rest of its line


class Module(NamedTuple):
    computations: dict[str, list[Instruction]]
    entry: str  # the ENTRY computation's name


def parse(hlo_text: str) -> Module:
    """Every computation's instructions, in order."""
    computations, current, entry = {}, None, ""
    for line in hlo_text.splitlines():
        if current is None:
            match = _COMPUTATION.match(line)
            if match and not line.startswith((" ", "HloModule")):
                current = computations.setdefault(match.group(2), [])
                entry = match.group(2) if match.group(1) else entry
        elif line.strip() == "}":
            current = None
        else:
            match = _INSTRUCTION.match(line)
            if match:
                current.append(Instruction(*match.groups()))
    return Module(computations, entry)


def called(rest: str) -> list[str]:
    """The computations an instruction calls (fusion bodies, reducers, loop bodies and conditions)."""
    return _CALLS.findall(rest)


def shape_bytes(shape: str) -> int:
    """Bytes of every array in a result type: "(f32[8,16]{1,0}, bf16[4])" -> 8*16*4 + 4*2; pred as 1 byte."""
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        bits = re.search(r"\d+", dtype)
        elements = math.prod(int(d) for d in dims.split(",") if d)
        total += elements * (int(bits.group()) if bits else 8) // 8
    return total


_OPERAND = re.compile(r"%([\w.\-]+)")


def copied_parameters(module: Module) -> list[Instruction]:
    """The ENTRY computation's parameters that it copies (`copy`, or an async `copy-start`), once each: for a train
    step with a donated state, the arrays XLA duplicates before writing the new values into their buffers."""
    entry = module.computations[module.entry]
    parameters = {i.name: i for i in entry if i.opcode == "parameter"}
    copied = {}
    for instruction in entry:
        operand = _OPERAND.match(instruction.rest)
        if instruction.opcode in ("copy", "copy-start") and operand and operand.group(1) in parameters:
            copied[operand.group(1)] = parameters[operand.group(1)]
    return list(copied.values())
