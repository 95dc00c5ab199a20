"""Model FLOPs of a function, counted on its jaxpr: the matmuls and convolutions, as MFU counts them.

Backend-independent, unlike XLA's cost analysis, which on GPUs misses the matmuls it hands to cuBLAS.
"""

from __future__ import annotations

import math

import jax
from jax.extend import core


def matmul_flops(fn, *args) -> float:
    """2 x multiply-adds of every dot_general and conv_general_dilated that fn(*args) runs (forward only)."""
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
            lhs, out = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
            total += 2.0 * math.prod(out) * math.prod(lhs[d] for d in lhs_contract)
        elif eqn.primitive.name == "conv_general_dilated":
            rhs, out = eqn.invars[1].aval.shape, eqn.outvars[0].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, *spatial) positions
            per_output = math.prod(rhs[d] for d in spec[1:])  # in features (already / groups) x kernel window
            total += 2.0 * math.prod(out) * per_output
        nested = [_jaxpr_flops(sub) for sub in _subjaxprs(eqn)]
        if eqn.primitive.name == "scan":  # the body runs `length` times (a scanned tower: once per block)
            total += eqn.params["length"] * sum(nested)
        elif eqn.primitive.name == "cond":  # one branch runs: count the costliest
            total += max(nested, default=0.0)
        else:  # a while loop's trip count is not in its jaxpr: its body counts once
            total += sum(nested)
    return total


def _subjaxprs(eqn):
    """The jaxprs nested in an equation's params (pjit, remat, custom_vjp, scan, cond, ...)."""
    for value in eqn.params.values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, core.Jaxpr):
                yield item
