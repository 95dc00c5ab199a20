"""Which (anchor, candidate) pairs are positives and which are negatives, from per-example data.

Every implementation (losses/contrastive.py) builds its masks here, block by block, from data that
travels with the examples; no [B, B] mask ever exists. A side (the rows or the columns of a block)
is a dict of [n] arrays:
- `index` (int): positive id. Pairs with equal ids are positives (own pair; sub-captions of one
  image; a positive group).
- `valid` (bool): real examples; padding takes part in nothing.
- `group` (int, optional): duplicate id. Other pairs with equal groups are not negatives (the same
  caption twice in a batch: a false negative).
- `domain` (int, optional): only candidates of the anchor's domain are negatives (per-language
  in-batch negatives).
- `threshold` (float, optional): negatives whose logit exceeds it are dropped for that anchor
  (UniME's false-negative rule, S_ij > S_ii + margin, in logit units). Rows and columns each use
  their own, so a pair can be a negative for one direction only.
"""

from __future__ import annotations

import jax


def _equal(rows, cols, key):
    return rows[key][:, None] == cols[key][None, :]


def pair_masks(rows: dict, cols: dict, logits: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(positive, row_keep, col_keep), each [r, c] bool, for a block of `logits` [r, c].

    row_keep: the pair enters row i's softmax (positives always do); col_keep: column j's.
    """
    both = rows["valid"][:, None] & cols["valid"][None, :]
    positive = both & _equal(rows, cols, "index")
    negative = both & ~positive
    if "group" in rows:
        negative &= ~_equal(rows, cols, "group")
    if "domain" in rows:
        negative &= _equal(rows, cols, "domain")
    if "threshold" not in rows:
        keep = positive | negative
        return positive, keep, keep
    row_keep = positive | (negative & (logits <= rows["threshold"][:, None]))
    col_keep = positive | (negative & (logits <= cols["threshold"][None, :]))
    return positive, row_keep, col_keep
