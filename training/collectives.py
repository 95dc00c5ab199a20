"""What a compiled step sends between devices: its collectives' bytes per device per step, read from the
optimised HLO text (the dry run's report; docs/scaling.md).

    traffic = collective_traffic(compiled.as_text(), devices=256)
    traffic.bytes_by_kind  # {"all-gather": ..., "all-reduce": ...}, bytes each device sends per step

Per op, with S its result's bytes and n the size of its device group, the bytes each device sends under
the ring algorithms (NCCL's and the TPU interconnect's for large messages): all-gather S (n-1)/n,
reduce-scatter S (n-1), all-reduce 2 S (n-1)/n, all-to-all S (n-1)/n, collective-permute S. An op in a
while loop counts once per iteration when XLA knows the trip count, else once (`lower_bound` is then
True); of a conditional's branches the costliest counts. An async pair counts once, at its "-done".
"""

from __future__ import annotations

import collections
import math
import re
from typing import NamedTuple

from training import hlo_text

_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


class Traffic(NamedTuple):
    bytes_by_kind: dict[str, float]  # per device per step, by collective opcode
    lower_bound: bool  # a loop with collectives had no known trip count

    @property
    def total(self) -> float:
        return sum(self.bytes_by_kind.values())


def group_size(rest: str, devices: int) -> int:
    """The size of a collective's device groups from its `replica_groups` (every device when empty)."""
    explicit = re.search(r"replica_groups=\{\{([\d,]*)\}", rest)  # {{0,1,2,3},{4,5,6,7}}
    if explicit:
        return len(explicit.group(1).split(","))
    iota = re.search(r"replica_groups=\[([\d,]+)\]<=", rest)  # [2,4]<=[8]: 2 groups of 4
    if iota:
        return int(iota.group(1).split(",")[-1])
    mesh = re.search(r"replica_groups=mesh\[([^\]]*)\].*?\{([^}]*)\}", rest)  # mesh['a'=4,'b'=2] ... {'a'}
    if mesh:
        sizes = {name: int(size) for name, size in re.findall(r"'([^']+)'=(\d+)", mesh.group(1))}
        return math.prod(sizes[name] for name in re.findall(r"'([^']+)'", mesh.group(2)))
    return devices


def sent_bytes(opcode: str, result_bytes: int, n: int) -> float:
    """Bytes each device sends for one collective (ring algorithms; see the module docstring)."""
    if opcode == "collective-permute":
        return float(result_bytes)
    if n <= 1:
        return 0.0
    factor = {
        "all-gather": (n - 1) / n,
        "reduce-scatter": n - 1,
        "all-reduce": 2 * (n - 1) / n,
        "all-to-all": (n - 1) / n,
    }
    return result_bytes * factor[opcode]


def _branches(rest: str) -> list[str]:
    """A conditional's branch computations: `branch_computations={%a, %b}` or `true_/false_computation=%a`."""
    listed = re.search(r"branch_computations=\{([^}]*)\}", rest)
    names = listed.group(1).split(",") if listed else re.findall(r"(?:true|false)_computation=%?([\w.\-]+)", rest)
    return [name.strip().lstrip("%") for name in names]


def collective_traffic(hlo: str, devices: int) -> Traffic:
    """Bytes each of `devices` devices sends per run of the optimised HLO module `hlo` (text)."""
    module = hlo_text.parse(hlo)
    unknown_trips = False

    def walk(computation: str) -> collections.Counter:
        nonlocal unknown_trips
        sent = collections.Counter()
        for i in module.computations.get(computation, ()):
            kind = i.opcode.removesuffix("-done")
            if kind in hlo_text.COLLECTIVE_OPCODES and not i.opcode.endswith("-start"):
                sent[kind] += sent_bytes(kind, hlo_text.shape_bytes(i.shape), group_size(i.rest, devices))
            elif i.opcode == "while":
                trips = _TRIP_COUNT.search(i.rest)
                body = sum((walk(c) for c in hlo_text.called(i.rest)), collections.Counter())
                unknown_trips |= bool(body) and not trips
                sent.update({k: v * (int(trips.group(1)) if trips else 1) for k, v in body.items()})
            elif i.opcode == "conditional":
                branches = [walk(name) for name in _branches(i.rest)]
                sent.update(max(branches, key=lambda c: sum(c.values()), default=collections.Counter()))
            else:
                for callee in hlo_text.called(i.rest):
                    sent.update(walk(callee))
        return sent

    return Traffic(dict(walk(module.entry)), unknown_trips)
