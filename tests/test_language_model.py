"""The decoder language model: its losses (next-token CE, SimCTG) and decoding (contrastive search, CAD, AdaCAD)
against NumPy references on hand-built inputs; KV-cached generation against recomputation; the sharded step
against one device; the metrics and the data."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import assert_same_params, run_steps, tiny_decoder_on_a_mesh, token_rows

from configs import lm, simctg
from configs.errors import ConfigError
from evaluation.language_eval import generation_metrics, repetition
from input_pipeline import lm_text
from input_pipeline.text_sources import read_sentences
from losses.language import next_token_loss, token_contrastive_loss
from models import generation as gen
from models.language_model import DecoderLM
from training.mesh import make_mesh
from training.validation import validate_config


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_next_token_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7))
    targets = np.array([[4, 5, 6, 3, 0], [1, 3, 0, 0, 0]])
    loss, count = next_token_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(targets))
    logp = np.log(_softmax(logits))
    nll = [-logp[b, i, t] for b in range(2) for i, t in enumerate(targets[b]) if t]
    assert int(count) == 6
    np.testing.assert_allclose(float(loss), np.mean(nll), rtol=1e-6)


def _simctg_reference(hidden, mask, margin):
    """The paper's equation, one row at a time, by loops."""
    rows = []
    for h, m in zip(hidden, mask, strict=True):
        h = h[m] / np.linalg.norm(h[m], axis=-1, keepdims=True)
        n = len(h)
        if n < 2:
            continue
        total = sum(max(0.0, margin - 1.0 + h[i] @ h[j]) for i in range(n) for j in range(n) if i != j)
        rows.append(total / (n * (n - 1)))
    return np.mean(rows)


@pytest.mark.parametrize("margin", [0.5, 0.9, 0.0])
def test_simctg_loss_matches_the_papers_equation(margin):
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(3, 6, 4))
    hidden[0, 2] = hidden[0, 1] * 3.0  # cosine 1: the largest hinge
    mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], bool)  # row 2: one token, no pair
    got = token_contrastive_loss(jnp.asarray(hidden, jnp.float32), jnp.asarray(mask), margin)
    want = _simctg_reference(hidden, mask, margin)
    np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-7)
    if margin == 0.0:
        assert float(got) == pytest.approx(0.0, abs=1e-6)  # only cosine > 1 - 0 counts: none


def test_contrastive_search_scores_and_choice():
    """(1 - α) p(v) - α max_j cos(h_v, h_j): the likeliest candidate repeats a context token (cosine 1) and loses."""
    probs = np.array([[0.6, 0.3, 0.1]])
    context = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])
    valid = np.array([[True, True, False]])  # the third slot is padding: never compared
    candidates = np.array([[[2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]])
    alpha = 0.6
    got = gen.degeneration_scores(jnp.asarray(probs), jnp.asarray(candidates), jnp.asarray(context),
                                  jnp.asarray(valid), alpha)  # fmt: skip
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    cos = unit(candidates[0]) @ unit(context[0, :2]).T
    want = (1 - alpha) * probs[0] - alpha * cos.max(axis=1)
    np.testing.assert_allclose(np.asarray(got)[0], want, rtol=1e-6)
    assert int(np.argmax(want)) == 1  # p 0.3 but orthogonal to the context beats p 0.6 that repeats


def test_cad_and_adacad_distributions_match_numpy():
    rng = np.random.default_rng(2)
    with_context, plain = rng.normal(size=(3, 11)) * 2, rng.normal(size=(3, 11)) * 2
    plain[2] = with_context[2]  # no conflict: JSD 0, AdaCAD is plain greedy there
    for alpha in (1.0, 0.5):
        logits, used = gen.context_aware_logits(jnp.asarray(with_context), jnp.asarray(plain), alpha)
        np.testing.assert_allclose(np.asarray(logits), (1 + alpha) * with_context - alpha * plain, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(used), alpha)
    p, q = np.maximum(_softmax(with_context), 1e-9), np.maximum(_softmax(plain), 1e-9)
    m = (p + q) / 2
    jsd = 0.5 * (p * np.log(p / m)).sum(-1) + 0.5 * (q * np.log(q / m)).sum(-1)
    logits, used = gen.context_aware_logits(jnp.asarray(with_context), jnp.asarray(plain), -1.0)
    np.testing.assert_allclose(np.asarray(used), jsd, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.asarray(logits), (1 + jsd[:, None]) * with_context - jsd[:, None] * plain, rtol=1e-4)
    assert used[2] == pytest.approx(0.0, abs=1e-6) and 0 < float(used.max()) <= np.log(2)


# The Llama-style switches (models/language_model.py): rotary positions, grouped-query attention, SwiGLU, RMSNorm.
LLAMA = dict(kv_heads=2, norm="rms_norm", position="rope", mlp="swiglu", bias=False, tie_embeddings=False)


@functools.cache
def _peaked(style: str):
    """A random DecoderLM (GPT-2- or Llama-style) with weights scaled up, so its distributions are peaked and varied."""
    model = DecoderLM(vocab_size=40, width=32, depth=1, heads=4, max_len=32, **(LLAMA if style == "llama" else {}))
    params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))["params"]
    return model, jax.tree.map(lambda x: x * (6 if style == "gpt" else 4), params)


@pytest.fixture(scope="module")
def peaked_model():
    return _peaked("gpt")


PROMPTS = [[2, 5, 6, 7, 8], [2, 9], [2, 11, 12], [2, 30, 31, 32, 33]]


@pytest.mark.parametrize("style", ["gpt", "llama"])
def test_cached_greedy_equals_recomputation_token_for_token(style):
    model, params = _peaked(style)
    tokens, mask = gen.left_pad(PROMPTS)
    cached = gen.generate(model, params, tokens, mask, jax.random.PRNGKey(0), gen.Decoding("greedy", 12))
    reference = gen.uncached_greedy(model, params, tokens, mask, 12)
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(reference))
    # left padding changes nothing: the shortest prompt alone gives its row of the batch
    t, m = gen.left_pad([PROMPTS[1]])
    alone = gen.generate(model, params, t, m, jax.random.PRNGKey(0), gen.Decoding("greedy", 12))
    np.testing.assert_array_equal(np.asarray(alone)[0], np.asarray(cached)[1])
    assert len(set(map(tuple, np.asarray(cached)))) == len(PROMPTS)  # the rows differ: the check has teeth


def _sequence_log_prob(model, params, prompt, new):
    """Summed log-probability of `new` (up to and with its EOS) after `prompt`, by recomputation."""
    ids = list(new[: list(new).index(3) + 1]) if 3 in list(new) else list(new)
    buffer, mask = np.zeros((1, 16), np.int32), np.zeros((1, 16), bool)
    buffer[0, : len(prompt + ids)], mask[0, : len(prompt + ids)] = prompt + ids, True
    out, _ = _forward(model)(params, buffer, mask)
    logp = np.asarray(jax.nn.log_softmax(gen._generable(out)["logits"][0], axis=-1))
    return sum(logp[len(prompt) - 1 + i, t] for i, t in enumerate(ids)), len(ids)


@functools.cache
def _forward(model):
    return jax.jit(lambda p, b, m: model.apply({"params": p}, b, mask=m))


def test_degenerate_settings_of_each_strategy_are_greedy_and_beam_scores_at_least_greedy(peaked_model):
    model, params = peaked_model
    tokens, mask = gen.left_pad(PROMPTS)
    greedy = np.asarray(gen.generate(model, params, tokens, mask, jax.random.PRNGKey(0), gen.Decoding("greedy", 8)))
    for decoding in (gen.Decoding("top_k", 8, top_k=1), gen.Decoding("nucleus", 8, top_p=1e-6),
                     gen.Decoding("contrastive", 8, top_k=4, alpha=0.0), gen.Decoding("beam", 8, beams=1)):  # fmt: skip
        got = gen.generate(model, params, tokens, mask, jax.random.PRNGKey(1), decoding)
        np.testing.assert_array_equal(np.asarray(got), greedy, err_msg=decoding.strategy)
    beam = np.asarray(
        gen.generate(model, params, tokens, mask, jax.random.PRNGKey(0), gen.Decoding("beam", 8, beams=4))
    )
    for row, prompt in enumerate(PROMPTS):
        b_score, b_len = _sequence_log_prob(model, params, prompt, beam[row])
        g_score, g_len = _sequence_log_prob(model, params, prompt, greedy[row])
        assert b_score / b_len >= g_score / g_len - 1e-4


def test_contrastive_search_matches_a_numpy_loop(peaked_model):
    """Each step: top-k candidates by probability, each one run to get its hidden state, the best
    (1 - α) p - α max cos over the earlier tokens' hidden states — recomputed from scratch here."""
    model, params = peaked_model
    prompt, k, alpha, steps = PROMPTS[0], 4, 0.6, 6
    tokens, mask = gen.left_pad([prompt])
    got = np.asarray(gen.generate(model, params, tokens, mask, jax.random.PRNGKey(0),
                                  gen.Decoding("contrastive", steps, top_k=k, alpha=alpha)))[0]  # fmt: skip
    width = len(prompt) + steps + 1
    forward = jax.jit(lambda b, m: gen._generable(model.apply({"params": params}, b, mask=m)[0]))

    def run(ids):  # (logits, hidden) at every position of `ids`, one compiled program for every length
        buffer, mask = np.zeros((1, width), np.int32), np.zeros((1, width), bool)
        buffer[0, : len(ids)], mask[0, : len(ids)] = ids, True
        out = forward(buffer, mask)
        return np.asarray(out["logits"][0, : len(ids)], np.float64), np.asarray(out["hidden"][0, : len(ids)])

    seq = list(prompt)
    for _ in range(steps):
        logits, context = run(seq)
        probs = _softmax(logits[-1])
        candidates = np.argsort(-probs)[:k]
        scores = []
        for v in candidates:
            h = run(seq + [int(v)])[1][-1]
            cos = context @ h / (np.linalg.norm(context, axis=1) * np.linalg.norm(h))
            scores.append((1 - alpha) * probs[v] - alpha * cos.max())
        seq.append(int(candidates[int(np.argmax(scores))]))
        if seq[-1] == 3:
            break
    np.testing.assert_array_equal(got[: len(seq) - len(prompt)], seq[len(prompt) :])


def test_decoding_uses_the_tokenizers_special_ids():
    from input_pipeline import tokenizer

    assert (gen.PAD_ID, gen.BOS_ID, gen.EOS_ID) == (tokenizer.PAD_ID, tokenizer.BOS_ID, tokenizer.EOS_ID)


def test_repetition_and_diversity_on_hand_counted_text():
    text = "a b a b a b"  # bigrams: ab ba ab ba ab -> 2 unique of 5
    assert repetition([text], 2) == pytest.approx(60.0)
    assert repetition([text], 4) == pytest.approx(100 * (1 - 2 / 3))
    metrics = generation_metrics([text, "x y z w"])
    rep2, rep3, rep4 = (60.0 + 0.0) / 2, (100 * (1 - 2 / 4) + 0) / 2, (100 * (1 - 2 / 3) + 0) / 2
    assert metrics["rep-2"] == pytest.approx(rep2)
    assert metrics["diversity"] == pytest.approx(100 * (1 - rep2 / 100) * (1 - rep3 / 100) * (1 - rep4 / 100))


def test_lm_corpus_is_a_pure_function_and_its_conflict_questions_are_right():
    assert lm_text.record(0, "train", 17) == lm_text.record(0, "train", 17)
    assert lm_text.record(0, "train", 17) != lm_text.record(0, "test", 17)
    for (prompt, said, truth), (agree_prompt, agree_said, agree_truth) in zip(
        lm_text.conflict_questions("conflict"), lm_text.conflict_questions("agreement"), strict=True
    ):
        assert said != truth and agree_said == agree_truth == truth
        assert f" {said} ." in prompt and f" {truth} ." in agree_prompt
    # the facts are in the training data: a memorised entity's statement occurs among the first records
    texts = {lm_text.record(0, "train", i)["text"] for i in range(3000)}
    name, colour = lm_text.ENTITIES[0], lm_text.value(0, "colour")
    assert f"the {name} is {colour} ." in texts
    assert not any(lm_text.ENTITIES[-1] in t for t in texts)  # the last entities are never named


def test_user_text_jsonl_skips_and_counts_bad_lines(tmp_path, caplog):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join([json.dumps({"text": "one"}), "{not json", json.dumps({"text": ""}),
                               json.dumps({"other": 1}), json.dumps({"text": " two "})]))  # fmt: skip
    assert read_sentences(str(path)) == [{"text": "one"}, {"text": "two"}]
    assert "Skipped 1 unusable rows" in caplog.text and "Skipped 2 unusable rows" in caplog.text


def test_user_text_skips_and_counts_lines_that_are_not_utf8_and_refuses_a_binary_file(tmp_path, caplog):
    path = tmp_path / "train.txt"
    path.write_bytes(b"first line\n" + b"\xff\xfe broken\n\n" + "zweite Zeile über\n".encode())
    assert read_sentences(str(path)) == [{"text": "first line"}, {"text": "zweite Zeile über"}]
    assert "Skipped 1 unusable rows" in caplog.text and "line not UTF-8" in caplog.text
    binary = tmp_path / "image.txt"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ValueError, match="holds no usable sentences"):
        read_sentences(str(binary))


def test_validation_names_the_fix_before_jax_starts():
    config = simctg.get_config()
    config.simctg.margin = 3.0
    with pytest.raises(ConfigError, match="simctg.margin"):
        validate_config(config)
    config = lm.get_config()
    config.generation.top_p = 0.0
    with pytest.raises(ConfigError, match="generation.top_p"):
        validate_config(config)
    config = lm.get_config()
    config.evals.language.strategies = ("greedy", "typical")
    with pytest.raises(ConfigError, match="typical"):
        validate_config(config)
    config = lm.get_config()
    config.objective = "clip"
    with pytest.raises(ConfigError, match="model.kind"):
        validate_config(config)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_lm_and_simctg_steps_on_8_devices_equal_one_device():
    for module in (simctg,):  # the LM and SimCTG's term, per row: the two parts of both objectives
        config = tiny_decoder_on_a_mesh(module.get_config())
        rng = np.random.default_rng(0)
        batches = [{"text": token_rows(rng, 13)} for _ in range(2)]  # BOS first; every third row padded after 9
        ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
        params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches)
        for m, r in zip(metrics, ref_metrics, strict=True):
            np.testing.assert_allclose(m["loss"], r["loss"], rtol=1e-5)
        assert not np.allclose(ref_metrics[0]["loss"], ref_metrics[1]["loss"])  # step 2 saw updated params
        assert ("contrastive_loss" in ref_metrics[0]) == (module is simctg)
        assert_same_params(params, ref_params)
