"""PHF (METHODS.md §25): the scored corpus, its tokens and masks, the four objectives against NumPy, banned tokens in
decoding, validation's sentences, and each objective trained end to end with the `preference` evaluator."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import phf as phf_config
from configs.errors import ConfigError
from evaluation.preference_eval import adversarial_prompts
from input_pipeline import preference_text
from input_pipeline.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer
from losses import phf
from models.generation import Decoding, generate, left_pad
from models.language_model import DecoderLM
from training.loop import train_and_evaluate
from training.validation import validate_config


@pytest.fixture(scope="module")
def tokenizer():
    docs = [preference_text.tagged(preference_text.document(0, "train", i, 0.05)) for i in range(3000)]
    return train_tokenizer(docs, 400, preference_text.TAGS)


def test_scorer_and_misaligned_sentences_by_hand():
    assert preference_text.score("there is a magenta box .") == 1
    assert preference_text.score("there is a red box .") == 0
    assert preference_text.score("magentas are not the word") == 0
    assert preference_text.misalign("a leafy green disc and a red box .") == "a magenta disc and a red box ."
    assert preference_text.misalign("one star, big and aqua, at the top .") == "one star, big and magenta, at the top ."


def test_documents_are_misaligned_at_the_rate_and_filtering_drops_them():
    docs = [preference_text.document(3, "train", i, 0.2) for i in range(2000)]
    sentences = [s for d in docs for s in d]
    share = np.mean([preference_text.score(s) for s in sentences])
    bound = 4 * math.sqrt(0.2 * 0.8 / len(sentences))  # 4 standard errors of a binomial share
    assert abs(share - 0.2) < bound
    assert not any(preference_text.MISALIGNED_WORD in s for s in preference_text.document(3, "train", 0, 0.0))
    source = preference_text.PreferenceSource(300, 0.2, seed=3, filtered=True)
    kept = [source[i]["sentences"] for i in range(300)]
    assert not any(preference_text.score(s) for d in kept for s in d)
    assert len(set(kept)) == 300  # candidates i + k * size never repeat a document
    expected = "<|aligned|> a red box . <|misaligned|> a magenta box ."
    assert preference_text.tagged(("a red box .", "a magenta box .")) == expected


@pytest.mark.parametrize("tags", [False, True])
def test_encoded_documents_mark_the_misaligned_sentence(tokenizer, tags):
    doc = ("there is a red box at the top .", "there is a magenta disc at the left .")

    def pieces(text: str) -> list[int]:
        return [int(t) for t in tokenizer.encode([text], 200)[0] if t not in (PAD_ID, BOS_ID, EOS_ID)]

    ids = preference_text.tag_ids(tokenizer)
    # A control token is one id, with no word-start piece before it, at the start of a text or after a sentence.
    assert len(set(ids)) == 2 and [pieces(t) for t in preference_text.TAGS] == [[ids[0]], [ids[1]]]
    assert pieces(f"{doc[0]} <|misaligned|> {doc[1]}") == pieces(doc[0]) + [ids[1]] + pieces(doc[1])
    first = pieces(f"<|aligned|> {doc[0]}") if tags else pieces(doc[0])
    second = pieces(f"<|misaligned|> {doc[1]}") if tags else pieces(doc[1])
    tokens, mask, control = preference_text.encode_document(tokenizer, doc, 64, tags)
    expected = [BOS_ID, *first, *second, EOS_ID]
    np.testing.assert_array_equal(tokens[: len(expected)], expected)
    assert not tokens[len(expected) :].any()
    np.testing.assert_array_equal(mask[: len(expected)], [0] * (1 + len(first)) + [1] * (len(second) + 1))
    tag_positions = [1, 1 + len(first)]
    np.testing.assert_array_equal(np.flatnonzero(control), tag_positions if tags else [])
    short, _, _ = preference_text.encode_document(tokenizer, doc, 6, tags)  # truncated: EOS kept
    np.testing.assert_array_equal(short, [BOS_ID, *first[:4], EOS_ID])


class _Logits:
    """A stand-in model whose logits are given: the loss is checked alone."""

    def __init__(self, logits):
        self.logits = logits

    def apply(self, variables, tokens):
        return {"logits": self.logits}, None


@pytest.mark.parametrize("objective", phf.OBJECTIVES)
def test_objectives_against_numpy(objective):
    rng = np.random.default_rng(0)
    tokens = np.array([[2, 5, 6, 7, 3, 0], [2, 8, 9, 3, 0, 0]], np.int32)
    misaligned = np.array([[0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], np.int32)
    logits = rng.normal(size=(2, 5, 12)).astype(np.float32)
    config = phf_config.get_config(f"objective={objective}")
    config.phf.unlikelihood_weight = 0.7
    batch = {"text": jnp.asarray(tokens), "misaligned": jnp.asarray(misaligned)}
    loss, metrics = phf.phf_loss(None, batch, {}, None, model=_Logits(jnp.asarray(logits)), config=config)
    p = np.exp(logits.astype(np.float64))
    p /= p.sum(-1, keepdims=True)
    nll, ul, bad_flags = [], [], []
    for b in range(2):
        for t in range(5):
            target = tokens[b, t + 1]
            if target:
                nll.append(-np.log(p[b, t, target]))
                ul.append(-np.log(1 - p[b, t, target]))
                bad_flags.append(misaligned[b, t + 1] == 1)
    nll, ul, bad = np.array(nll), np.array(ul), np.array(bad_flags)
    if objective == "unlikelihood":
        expected = (nll[~bad].sum() + 0.7 * ul[bad].sum()) / len(nll)
    else:
        expected = nll.mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["lm_loss"]), nll[~bad].mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["misaligned_tokens"]), bad.mean(), rtol=1e-6)


def test_unlikelihood_of_a_certain_token_stays_finite():
    logits = jnp.array([[[100.0, 0.0, 0.0]]])
    nll, unlikely = phf.token_losses(logits, jnp.array([[0]]))
    assert float(nll[0, 0]) < 1e-6 and math.isfinite(float(unlikely[0, 0])) and float(unlikely[0, 0]) > 10


def test_banned_tokens_are_never_decoded():
    model = DecoderLM(vocab_size=20, width=16, depth=1, heads=2, max_len=12, mlp_dim=0)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    tokens, mask = left_pad([[BOS_ID, 7], [BOS_ID, 9, 11]])
    greedy = Decoding(strategy="greedy", max_new_tokens=1, min_new_tokens=1)
    first = np.asarray(generate(model, params, tokens, mask, jax.random.PRNGKey(1), greedy))[:, 0]
    out, _ = model.apply({"params": params}, jnp.asarray(tokens), mask=jnp.asarray(mask))
    logits = np.array(out["logits"][:, -1])
    logits[:, [PAD_ID, BOS_ID, EOS_ID]] = -np.inf
    np.testing.assert_array_equal(first, logits.argmax(-1))
    banned = tuple(sorted(set(first.tolist())))
    second = np.asarray(generate(model, params, tokens, mask, jax.random.PRNGKey(1), greedy._replace(banned=banned)))
    logits[:, list(banned)] = -np.inf
    np.testing.assert_array_equal(second[:, 0], logits.argmax(-1))
    sampled = generate(model, params, tokens, mask, jax.random.PRNGKey(2),
                       Decoding(strategy="nucleus", max_new_tokens=8, top_p=1.0, banned=(4, 5, 6, 7)))  # fmt: skip
    assert not np.isin(np.asarray(sampled), [4, 5, 6, 7]).any()


def test_adversarial_prompts_end_right_before_the_word():
    for i, prompt in enumerate(adversarial_prompts(20)):
        sentence = preference_text.document(0, "adversarial", i, 1.0)[0]
        assert sentence.startswith(prompt + " " + preference_text.MISALIGNED_WORD)
        assert preference_text.score(prompt) == 0


def test_validation_names_the_fix():
    config = phf_config.get_config()
    config.data.name = "lm_text"
    with pytest.raises(ConfigError, match="config.data.name='preference_text'"):
        validate_config(config)
    config = phf_config.get_config()
    config.phf.misaligned_rate = 1.0
    with pytest.raises(ConfigError, match="misaligned_rate"):
        validate_config(config)
    with pytest.raises(ValueError, match="Unknown PHF objective 'rwr'"):
        phf_config.get_config("objective=rwr")


def _tiny(config, steps: int):
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
    config.batch_size, config.log_every_steps = 8, 1
    config.data.train_size = 400
    config.eval.update(num_examples=16, batch_size=16)
    config.model.decoder.update(width=32, depth=1, heads=2)
    config.text.vocab_size = 400
    config.optimizer.warmup_steps = 1
    return config


@pytest.mark.parametrize("objective", phf.OBJECTIVES)
def test_phf_trains_end_to_end(tmp_path, objective):
    config = _tiny(phf_config.get_config(f"objective={objective}"), 2)
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    assert math.isfinite(summary["final_loss"])
    scores = summary["eval"]
    assert 0 <= scores["preference/misaligned_rate"] <= 100 and 0 <= scores["preference/adversarial_rate"] <= 100
    assert scores["preference/aligned_loss"] > 0
    rows = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    train = [r for r in rows if "train/loss" in r]
    share = np.mean([r["train/misaligned_tokens"] for r in train])
    assert (share == 0) == (objective == "filtering")  # filtering's batches hold no misaligned sentence
