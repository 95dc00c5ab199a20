"""Hard-negative mining (UniME stage 2) and the false-negative masks (UniME margin, MultiCSR frozen encoder)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import float64, unit_rows

from losses.false_negatives import frozen_false_negatives, margin_false_negatives, mask_logits
from losses.hard_negatives import hard_negative_fields, hard_negative_loss


def _logsumexp(a):
    a = np.asarray(a, np.float64)
    return a.max() + np.log(np.exp(a - a.max()).sum())


def reference_loss(query, positives, candidates, extra, false_negatives, scale, top_k, margin, mode):
    """Loop over queries: filter, choose, CE over [positive, chosen], as UniME's SimpleContrastiveLossBatchRank."""
    losses, kept = [], []
    for i in range(len(query)):
        positive = query[i] @ positives[i]
        in_batch = [(query[i] @ candidates[j], bool(false_negatives[i, j])) for j in range(len(candidates)) if j != i]
        own = [(query[i] @ e, False) for e in (extra[i] if extra is not None else [])]
        scored = [(s, masked or s > positive + margin) for s, masked in in_batch + own]
        if top_k > 0:
            negatives = sorted((s for s, dropped in scored if not dropped), reverse=True)[:top_k]
            logits = [scale * positive] + [scale * s for s in negatives]
            kept.append(len(negatives))
        else:
            # "zero": a dropped candidate's logit is 0 and stays in the softmax; "exclude": it leaves.
            logits = [scale * positive] + [
                0.0 if dropped else scale * s for s, dropped in scored if not (dropped and mode == "exclude")
            ]
            kept.append(sum(not dropped for _, dropped in scored))
        losses.append(_logsumexp(logits) - scale * positive)
    return float(np.mean(losses)), float(np.mean(kept))


def _inputs(seed=0, batch=6, dim=5, extra=3):
    rng = np.random.default_rng(seed)
    query = unit_rows(rng.normal(size=(batch, dim)))
    positives = unit_rows(query + 0.6 * rng.normal(size=(batch, dim)))
    candidates = positives.copy()
    candidates[2] = unit_rows(positives[1] + 0.01 * rng.normal(size=(1, dim)))[0]  # a near-duplicate caption
    negatives = unit_rows(query[:, None] + 0.8 * rng.normal(size=(batch, extra, dim)))
    false_negatives = rng.random((batch, batch)) < 0.2
    return query, positives, candidates, negatives, false_negatives


@pytest.mark.parametrize(
    "top_k, margin, use_extra, use_mask, mode",
    [
        (3, 0.1, True, False, "exclude"),
        (8, 0.1, True, True, "exclude"),  # more slots than valid candidates for some rows
        (2, -0.2, False, True, "exclude"),  # a negative margin drops many candidates
        (0, 0.1, True, True, "exclude"),
        (0, 0.1, True, True, "zero"),  # MultiCSR's code: masked logits zeroed, not removed
    ],
)
def test_hard_negative_loss_matches_reference(top_k, margin, use_extra, use_mask, mode):
    query, positives, candidates, negatives, mask = _inputs()
    extra = negatives if use_extra else None
    mask = mask if use_mask else np.zeros_like(mask)
    scale = 1 / 0.02
    expected, kept = reference_loss(query, positives, candidates, extra, mask, scale, top_k, margin, mode)
    with float64():
        loss, metrics = hard_negative_loss(
            jnp.asarray(query),
            jnp.asarray(positives),
            jnp.asarray(candidates),
            jnp.float64(scale),
            top_k=top_k,
            margin=margin,
            extra_negatives=None if extra is None else jnp.asarray(extra),
            false_negatives=jnp.asarray(mask) if use_mask else None,
            mask_mode=mode,
        )
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    assert float(metrics["hard_negatives_used"]) == pytest.approx(kept)


def test_zero_and_exclude_masking_differ():
    """The documented choice matters: a zeroed logit still adds exp(0) = 1 to the denominator."""
    logits = jnp.array([[2.0, 1.0, 3.0]])
    mask = jnp.array([[False, False, True]])
    excluded = np.asarray(mask_logits(logits, mask, "exclude"))
    zeroed = np.asarray(mask_logits(logits, mask, "zero"))
    assert zeroed.tolist() == [[2.0, 1.0, 0.0]]
    assert excluded[0, :2].tolist() == [2.0, 1.0] and np.exp(excluded[0, 2] - 2.0) == 0.0
    with pytest.raises(ValueError, match="use one of"):
        mask_logits(logits, mask, "drop")


def test_margin_rule_drops_candidates_above_the_positive_plus_margin():
    scores = np.array([[0.5, 0.65, 0.55], [0.9, 0.2, 0.1]])
    positive = np.array([0.5, 0.75])
    mask = np.asarray(margin_false_negatives(jnp.asarray(scores), jnp.asarray(positive), 0.1))
    assert mask.tolist() == [[False, True, False], [True, False, False]]


def test_frozen_encoder_masks_near_duplicates_but_never_the_positive():
    rng = np.random.default_rng(1)
    frozen = unit_rows(rng.normal(size=(5, 8)))
    frozen[3] = unit_rows(frozen[0] + 0.05 * rng.normal(size=(1, 8)))[0]  # caption 3 paraphrases caption 0
    is_positive = np.eye(5, dtype=bool)
    mask = np.asarray(frozen_false_negatives(jnp.asarray(frozen), jnp.asarray(frozen), 0.95, jnp.asarray(is_positive)))
    expected = (frozen @ frozen.T > 0.95) & ~is_positive
    assert mask.tolist() == expected.tolist()
    assert mask[0, 3] and mask[3, 0] and mask.sum() == 2


def test_fields_tokenize_the_six_hard_negative_captions():
    record = {"hard_negatives": tuple(f"caption {i}" for i in range(6))}
    fields = hard_negative_fields(record, np.random.default_rng(0), lambda texts: np.array([[len(t)] for t in texts]))
    assert fields["hard_negative_text"].tolist() == [[9]] * 6
