"""Text generation from a DecoderLM with its key-value cache, jitted on the device: greedy, beam search, top-k and
nucleus sampling, contrastive search (SimCTG, METHODS.md §13), and context-aware decoding (CAD with a fixed α,
AdaCAD's α_t from the Jensen-Shannon divergence, METHODS.md §17).

Prompts come left-padded (`left_pad`), BOS first and no EOS; a row stops at its first EOS and pads (0) after
it. Every function returns the new tokens int32 [B, max_new_tokens].
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models.language_model import Cache, DecoderLM, init_cache

# The special ids of the project's tokenizers (input_pipeline/tokenizer.py; models read no pipeline module, and
# tests/test_language_model.py checks the two agree).
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3

STRATEGIES = ("greedy", "beam", "top_k", "nucleus", "contrastive")


class Decoding(NamedTuple):
    """One decoding strategy and its settings (config.generation.<name>; docs/language.md)."""

    strategy: str = "greedy"
    max_new_tokens: int = 32
    top_k: int = 8  # top_k sampling's k; contrastive search's candidates (the paper's k)
    top_p: float = 0.9  # nucleus sampling's probability mass
    temperature: float = 1.0  # sampling strategies
    beams: int = 4
    alpha: float = 0.6  # contrastive search's degeneration penalty weight
    min_new_tokens: int = 0  # EOS is ruled out before this many tokens (HF's min_new_tokens)
    banned: tuple[int, ...] = ()  # ids never generated (PHF's control tokens; HF's bad_words_ids)


def left_pad(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (int32 [B, P] right-aligned, bool [B, P] real-token mask), P the longest row."""
    length = max(len(r) for r in rows)
    tokens = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        tokens[i, length - len(row) :] = row
    return tokens, tokens != PAD_ID


def prompt_ids(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """BOS + pieces of each text (no EOS: the model continues it), at most max_len ids."""
    encoded = tokenizer.encode(list(texts), max_len + 1)  # BOS, pieces, EOS, padding
    return [[int(t) for t in row if t not in (PAD_ID, EOS_ID)][:max_len] for row in encoded]


def _generable(out: dict) -> dict:
    """The model's outputs with padding and BOS ruled out as next tokens (a trained model never predicts them,
    an untrained one may)."""
    special = (jnp.arange(out["logits"].shape[-1]) == PAD_ID) | (jnp.arange(out["logits"].shape[-1]) == BOS_ID)
    return dict(out, logits=jnp.where(special, -1e9, out["logits"]))


def _prefill(model: DecoderLM, params, tokens, mask, slots: int, prefix=None):
    cache = init_cache(model, tokens.shape[0], slots)
    out, cache = model.apply({"params": params}, tokens, mask=mask, prefix=prefix, cache=cache)
    return _generable(out), cache


def _step(model, params, token, live, cache: Cache):
    """One token [B] per row (a stopped row's is padding, no key) -> ({logits, hidden} [B, ...], cache)."""
    out, cache = model.apply({"params": params}, token[:, None], mask=live[:, None], cache=cache)
    return _generable(jax.tree.map(lambda x: x[:, 0], out)), cache


def _finish(token, live):
    """The emitted token (padding once a row stopped) and whether the row is still live after it."""
    token = jnp.where(live, token, PAD_ID)
    return token, live & (token != EOS_ID)


def _rule_out(logits, step, decoding: Decoding):
    """logits [..., V] with decoding.banned ruled out, and EOS while `step` (the index of the token being chosen)
    < decoding.min_new_tokens."""
    ids = jnp.arange(logits.shape[-1])
    banned = ((ids == EOS_ID) & (step < decoding.min_new_tokens)) | jnp.isin(ids, jnp.asarray(decoding.banned, int))
    return jnp.where(banned, -1e9, logits)


def _pick(logits, rng, decoding: Decoding):
    """The next token [B] from logits [B, V] by greedy, top-k or nucleus."""
    if decoding.strategy == "greedy":
        return jnp.argmax(logits, axis=-1)
    logits = logits / decoding.temperature
    if decoding.strategy == "top_k":
        kth = jax.lax.top_k(logits, decoding.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    else:  # nucleus: the smallest set of top tokens whose mass reaches top_p
        order = jnp.argsort(-logits, axis=-1)
        sorted_probs = jnp.take_along_axis(jax.nn.softmax(logits, axis=-1), order, axis=-1)
        keep_sorted = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs < decoding.top_p
        keep = jnp.zeros_like(keep_sorted).at[jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
        logits = jnp.where(keep, logits, -jnp.inf)
    return jax.random.categorical(rng, logits, axis=-1)


def degeneration_scores(probs, candidate_hidden, context_hidden, context_valid, alpha: float):
    """Contrastive search's score of each candidate: (1 - α) p(v) - α max_j cos(h_v, h_j) over the context.
    probs [B, K], candidate_hidden [B, K, W], context_hidden [B, S, W], context_valid [B, S] -> [B, K]."""
    unit = lambda h: h / jnp.sqrt(jnp.sum(jnp.square(h), axis=-1, keepdims=True) + 1e-12)  # noqa: E731
    cosine = jnp.einsum("bkw,bsw->bks", unit(candidate_hidden), unit(context_hidden))
    penalty = jnp.max(jnp.where(context_valid[:, None, :], cosine, -jnp.inf), axis=-1)
    return (1.0 - alpha) * probs - alpha * penalty


@functools.partial(jax.jit, static_argnames=("model", "decoding"))
def generate(model: DecoderLM, params, tokens, mask, rng, decoding: Decoding, prefix=None):
    """tokens / mask [B, P] (left_pad) -> int32 [B, decoding.max_new_tokens] by greedy, top_k, nucleus or
    contrastive (beam search: `beam_search`). `prefix` [B, K, width]: embeddings before the prompt (LiMBeR, CLOSE)."""
    if decoding.strategy == "beam":
        return beam_search(model, params, tokens, mask, decoding, prefix)
    batch, steps = tokens.shape[0], decoding.max_new_tokens
    slots = (0 if prefix is None else prefix.shape[1]) + tokens.shape[1] + steps
    out, cache = _prefill(model, params, tokens, mask, slots, prefix)
    # Contrastive search compares candidates with every earlier token's hidden state, kept slot by slot
    # (prefix slots hold embeddings, not tokens: never compared); the other strategies keep none.
    contrastive = decoding.strategy == "contrastive"
    start = slots - steps - tokens.shape[1]
    history = jnp.zeros((batch, slots if contrastive else 0, model.width))
    if contrastive:
        history = jax.lax.dynamic_update_slice_in_dim(history, out["hidden"], start, 1)
    is_token = jnp.arange(slots) >= start

    def body(carry, step_rng):
        cache, logits, history, live = carry
        logits = _rule_out(logits, cache.index - slots + steps, decoding)
        if decoding.strategy == "contrastive":
            valid = cache.valid & is_token
            token, out, cache = _contrastive_choice(model, params, logits, history, valid, cache, decoding)
            token, live_after = _finish(token, live)
        else:
            token, live_after = _finish(_pick(logits, step_rng, decoding), live)
            out, cache = _step(model, params, token, live, cache)
        if contrastive:
            history = jax.lax.dynamic_update_slice_in_dim(history, out["hidden"][:, None], cache.index - 1, 1)
        return (cache, out["logits"], history, live_after), token

    live = jnp.ones((batch,), bool)
    rngs = jax.random.split(rng, steps)
    _, new_tokens = jax.lax.scan(body, (cache, out["logits"][:, -1], history, live), rngs)
    return new_tokens.T.astype(jnp.int32)


def _contrastive_choice(model, params, logits, history, valid, cache: Cache, decoding: Decoding):
    """Runs the top-k candidates of every row one step ahead and keeps the best by degeneration_scores:
    (token [B], the chosen candidate's {logits, hidden} [B, ...], the cache with it appended)."""
    batch, k = logits.shape[0], decoding.top_k
    probs = jax.nn.softmax(logits, axis=-1)
    top_probs, candidates = jax.lax.top_k(probs, k)  # [B, K]
    wide = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0) if x.ndim else x, cache)
    out, wide = _step(model, params, candidates.reshape(-1), jnp.ones((batch * k,), bool), wide)
    hidden = out["hidden"].reshape(batch, k, -1)
    scores = degeneration_scores(top_probs, hidden, history, valid, decoding.alpha)
    choice = jnp.argmax(scores, axis=-1)
    rows = jnp.arange(batch) * k + choice
    chosen = jax.tree.map(lambda x: x[rows] if x.ndim else x, wide)
    return candidates[jnp.arange(batch), choice], jax.tree.map(lambda x: x[rows], out), chosen


def beam_search(model: DecoderLM, params, tokens, mask, decoding: Decoding, prefix=None):
    """Beam search with `decoding.beams` beams; a finished beam (EOS) keeps its score and extends with padding;
    the returned beam is the best by total log-probability divided by its length (tokens up to its EOS)."""
    batch, beams, steps = tokens.shape[0], decoding.beams, decoding.max_new_tokens
    repeat = lambda x: jnp.repeat(x, beams, axis=0)  # noqa: E731
    slots = (0 if prefix is None else prefix.shape[1]) + tokens.shape[1] + steps
    out, cache = _prefill(
        model, params, repeat(tokens), repeat(mask), slots, None if prefix is None else repeat(prefix)
    )
    log_probs = jax.nn.log_softmax(out["logits"][:, -1], axis=-1).reshape(batch, beams, -1)
    vocab = log_probs.shape[-1]
    scores = jnp.where(jnp.arange(beams) == 0, 0.0, -jnp.inf)[None].repeat(batch, 0)  # beams start identical
    pad_only = jnp.where(jnp.arange(vocab) == PAD_ID, 0.0, -jnp.inf)

    def body(carry, _):
        cache, log_probs, scores, live, lengths, sequence, t = carry
        log_probs = jnp.where(live[..., None], _rule_out(log_probs, t, decoding), pad_only)
        total = (scores[..., None] + log_probs).reshape(batch, -1)
        scores, flat = jax.lax.top_k(total, beams)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        rows = (jnp.arange(batch)[:, None] * beams + parent).reshape(-1)
        cache = jax.tree.map(lambda x: x[rows] if x.ndim else x, cache)
        live = jnp.take_along_axis(live, parent, axis=1)
        lengths = jnp.take_along_axis(lengths, parent, axis=1) + live
        sequence = jnp.take_along_axis(sequence, parent[..., None], axis=1).at[:, :, t].set(token)
        live = live & (token != EOS_ID)
        out, cache = _step(model, params, token.reshape(-1), (token != PAD_ID).reshape(-1), cache)
        log_probs = jax.nn.log_softmax(out["logits"], axis=-1).reshape(batch, beams, -1)
        return (cache, log_probs, scores, live, lengths, sequence, t + 1), None

    live = jnp.ones((batch, beams), bool)
    lengths = jnp.zeros((batch, beams), jnp.int32)
    sequence = jnp.zeros((batch, beams, steps), jnp.int32)
    carry = (cache, log_probs, scores, live, lengths, sequence, jnp.zeros((), jnp.int32))
    (_, _, scores, _, lengths, sequence, _), _ = jax.lax.scan(body, carry, None, length=steps)
    best = jnp.argmax(scores / jnp.maximum(lengths, 1), axis=-1)
    return sequence[jnp.arange(batch), best]


def context_aware_alpha(logits_context, logits_plain, alpha):
    """α per row: `alpha` (CAD) or, for alpha < 0, AdaCAD's JSD(p_c, p_∅) in nats (probabilities clamped ≥ 1e-9).
    `alpha` may be traced: one compiled decoder serves greedy (0), CAD and AdaCAD."""
    p = jnp.maximum(jax.nn.softmax(logits_context, axis=-1), 1e-9)
    q = jnp.maximum(jax.nn.softmax(logits_plain, axis=-1), 1e-9)
    m = 0.5 * (p + q)
    kl = lambda a, b: jnp.sum(a * (jnp.log(a) - jnp.log(b)), axis=-1)  # noqa: E731
    jsd = 0.5 * kl(p, m) + 0.5 * kl(q, m)
    return jnp.where(alpha < 0, jsd, jnp.asarray(alpha, jnp.float32))


def context_aware_logits(logits_context, logits_plain, alpha):
    """(1 + α) ℓ(·|c, x) − α ℓ(·|x) [B, V] and the α [B] used (context_aware_alpha)."""
    a = context_aware_alpha(logits_context, logits_plain, alpha)
    return (1.0 + a[:, None]) * logits_context - a[:, None] * logits_plain, a


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def context_aware_generate(model: DecoderLM, params, with_context, context_mask, without_context, plain_mask,
                           max_new_tokens: int, alpha: float):  # fmt: skip
    """Greedy decoding of (1 + α) ℓ(·|c, x, y<t) − α ℓ(·|x, y<t): two caches, one per prompt, fed the same
    chosen tokens. alpha 0 is greedy with the context; alpha < 0 is AdaCAD. -> (tokens [B, T], α_t [B, T])."""
    batch = with_context.shape[0]
    out_c, cache_c = _prefill(model, params, with_context, context_mask, with_context.shape[1] + max_new_tokens)
    out_p, cache_p = _prefill(model, params, without_context, plain_mask, without_context.shape[1] + max_new_tokens)

    def body(carry, _):
        cache_c, cache_p, logits_c, logits_p, live = carry
        logits, a = context_aware_logits(logits_c, logits_p, alpha)
        token, live_after = _finish(jnp.argmax(logits, axis=-1), live)
        out_c, cache_c = _step(model, params, token, live, cache_c)
        out_p, cache_p = _step(model, params, token, live, cache_p)
        return (cache_c, cache_p, out_c["logits"], out_p["logits"], live_after), (token, a)

    carry = (cache_c, cache_p, out_c["logits"][:, -1], out_p["logits"][:, -1], jnp.ones((batch,), bool))
    _, (tokens, alphas) = jax.lax.scan(body, carry, None, length=max_new_tokens)
    return tokens.T.astype(jnp.int32), alphas.T


def uncached_greedy(model: DecoderLM, params, tokens, mask, max_new_tokens: int):
    """Greedy decoding that recomputes the whole sequence at every step (no cache): the reference that the
    cached loop must equal token for token (tests). The sequence lives in one buffer of P + T slots whose
    unwritten tail is masked out, so one compiled forward serves every step."""
    batch, length = tokens.shape
    buffer = jnp.zeros((batch, length + max_new_tokens), jnp.int32).at[:, :length].set(tokens)
    real = jnp.zeros(buffer.shape, bool).at[:, :length].set(mask)
    forward = jax.jit(lambda b, r: _generable(model.apply({"params": params}, b, mask=r)[0])["logits"])
    live, new = jnp.ones((batch,), bool), []
    for t in range(max_new_tokens):
        token, live_after = _finish(jnp.argmax(forward(buffer, real)[:, length + t - 1], axis=-1), live)
        buffer, real = buffer.at[:, length + t].set(token), real.at[:, length + t].set(live)
        live = live_after
        new.append(token)
    return jnp.stack(new, axis=1).astype(jnp.int32)
