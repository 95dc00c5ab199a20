"""Negatives outside the in-batch matrix: per-anchor hard negatives and a shared memory bank.

- hard negatives [A, H, D]: candidates of one anchor only (rule-based or mined hard captions), which
  enter only that anchor's softmax (UniME, NegCLIP-style hard captions);
- a bank [Q, D]: candidates shared by every anchor, appended as columns (a queue of past embeddings,
  MoCo / CCP / uCLIP memory banks), with optional validity, group and domain ids as in losses/pairs.py.
Both are row-local work, O(A (H + Q) d): each device does its own anchors against the whole bank. The
softmax needs only their online log-sum-exp state (max, sum of exp(logit - max)), which seeds the
in-batch one (losses/tiled.py, losses/softmax.py); the sigmoid needs the sum of their pair losses.
With `chunk`, the bank is visited `chunk` columns at a time under jax.checkpoint, so no [A, Q]
logit matrix is stored for the backward pass.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from losses.softmax import exp_below_peak


class NegativeBank(NamedTuple):
    """Shared negatives: embedding [Q, D]; valid [Q] bool (filled slots); group, domain [Q] int ids."""

    embedding: jax.Array
    valid: jax.Array | None = None
    group: jax.Array | None = None
    domain: jax.Array | None = None


def _keep(side, logits, valid, group=None, domain=None):
    """[A, N] bool: extra candidate n is a negative of anchor a (all extras are negatives)."""
    keep = side["valid"][:, None] & valid
    if group is not None and "group" in side:
        keep &= side["group"][:, None] != group
    if domain is not None and "domain" in side:
        keep &= side["domain"][:, None] == domain
    if "threshold" in side:
        keep &= logits <= side["threshold"][:, None]
    return keep


def _hard_block(x, side, scale, hard_negatives, hard_valid):
    logits = jnp.einsum("ad,ahd->ah", scale * x, hard_negatives)
    valid = jnp.ones(logits.shape, bool) if hard_valid is None else hard_valid
    return logits, _keep(side, logits, valid)


def _bank_block(x, side, scale, block):
    logits = (scale * x) @ block.embedding.T
    ids = lambda a: None if a is None else a[None, :]  # noqa: E731
    return logits, _keep(side, logits, block.valid[None, :], ids(block.group), ids(block.domain))


def _bank_chunks(bank: NegativeBank, chunk: int) -> NegativeBank:
    """The bank padded (valid=False) to a multiple of `chunk` and split: every field [Q / chunk, chunk, ...]."""
    size = bank.embedding.shape[0]
    bank = bank._replace(valid=jnp.ones((size,), bool) if bank.valid is None else bank.valid)
    pad = -size % chunk

    def split(a):
        if a is None:
            return None
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(-1, chunk, *a.shape[1:])

    return NegativeBank(*(split(a) for a in bank))


def _reduce(fold, chunk, x, side, scale, hard_negatives, hard_valid, bank):
    """fold(state | None, logits, keep) over the hard negatives, then the bank (in chunks), or None."""
    state = None
    if hard_negatives is not None:
        state = fold(None, *_hard_block(x, side, scale, hard_negatives, hard_valid))
    if bank is None:
        return state
    chunks = _bank_chunks(bank, chunk or bank.embedding.shape[0])
    block = lambda i: jax.tree.map(lambda a: a[i], chunks)  # noqa: E731
    # The first chunk starts the state, so the carry is device-varying from the start inside shard_map.
    state = fold(state, *_bank_block(x, side, scale, block(0)))
    rest = jax.tree.map(lambda a: a[1:], chunks)

    @jax.checkpoint
    def step(state, part):
        return fold(state, *_bank_block(x, side, scale, part)), None

    return lax.scan(step, state, rest)[0]


def _softmax_fold(state, logits, keep):
    lowest = jnp.finfo(logits.dtype).min
    block_max = lax.stop_gradient(jnp.max(jnp.where(keep, logits, lowest), 1))
    peak = block_max if state is None else jnp.maximum(state[0], block_max)
    total = jnp.sum(exp_below_peak(jnp.where(keep, logits - peak[:, None], -jnp.inf)), 1)
    if state is not None:
        total = total + state[1] * exp_below_peak(state[0] - peak)
    return peak, total


def softmax_seed(x, side, scale, hard_negatives=None, hard_valid=None, bank=None, chunk=None):
    """(max [A], sum [A]) of the extra candidates of anchors x [A, D], or None without any.

    side: the anchors' side dict (valid, optional group / domain / threshold); scale: s;
    hard_negatives [A, H, D], hard_valid [A, H] bool; bank: NegativeBank; chunk: bank columns per step.
    The max carries no gradient; the sum is differentiable.
    """
    return _reduce(_softmax_fold, chunk, x, side, scale, hard_negatives, hard_valid, bank)


def sigmoid_extra_loss(x, side, scale, bias, hard_negatives=None, hard_valid=None, bank=None, chunk=None):
    """[A] sums of -log sigmoid(-(s <x, n> + b)) over the extra candidates n of each anchor, or None."""

    def fold(state, logits, keep):
        total = jnp.sum(jnp.where(keep, jax.nn.softplus(logits + bias), 0.0), 1)
        return total if state is None else state + total

    return _reduce(fold, chunk, x, side, scale, hard_negatives, hard_valid, bank)
