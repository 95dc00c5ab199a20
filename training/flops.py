"""Model FLOPs, as MFU counts them: the matmuls and convolutions of a function, counted on its jaxpr, and the
same count in closed form for the decoder language model (models/language_model.py).

Backend-independent, unlike XLA's cost analysis, which on GPUs misses the matmuls it hands to cuBLAS.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
from jax.extend import core

if TYPE_CHECKING:
    from models.language_model import DecoderLM


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


def decoder_forward_flops(model: DecoderLM, batch: int, length: int) -> float:
    """2 x multiply-adds of the matmuls of `model`'s forward pass over `batch` sequences of `length` tokens: what
    matmul_flops counts on the jaxpr of its dense-attention forward (tests/test_flops.py), in closed form.

    Per token, 2 x (per block: q [W, H*Dh], k and v [W, KV*Dh] each (grouped-query: KV heads), o [H*Dh, W], the
    MLP's 2 [W, M] matrices for GELU or 3 for SwiGLU; then the output projection [W, vocab], tied or not) plus per
    block the attention's scores q.k and weighted sum of v, 2 x length x H*Dh each. Like the two-tower count (its
    causal text tower included) the attention is the full length x length product the dense kernel computes:
    the causal half a flash kernel may skip is not taken off (PaLM's 6N + 12 x depth x length x width convention
    for training). The embedding lookups, norms, softmax and loss are not matmuls and are not counted."""
    width, heads = model.width, model.heads
    head_dim, kv_heads = width // heads, model.kv_heads or heads
    projections = width * head_dim * (heads + 2 * kv_heads) + heads * head_dim * width
    mlp = (3 if model.mlp == "swiglu" else 2) * width * model.mlp_width
    attention = 2 * length * heads * head_dim
    per_token = 2 * (model.depth * (projections + mlp + attention) + width * model.vocab_size)
    return float(batch * length * per_token)


def decoder_train_flops(model: DecoderLM, batch: int, length: int) -> float:
    """Model FLOPs of one training step (forward and backward, 3 x the forward's: backward = 2 x forward, so
    remat's recomputation is not useful work) of `model` on `batch` sequences of `length` tokens."""
    return 3 * decoder_forward_flops(model, batch, length)
