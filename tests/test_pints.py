"""1.5-Pints (METHODS.md §27): the two corpora teach the same facts in the same number of words, the web one
contradicting them at its rate with the truth the majority; the fact probe against a hand loop over a tiny model's
log-probabilities; both arms trained end to end on one tokenizer with the `fact_probe` evaluator."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import pints
from evaluation.fact_probe import FactProbeEvaluator, fact_prompts
from input_pipeline import quality_text, shapes
from input_pipeline.lm_text import ENTITIES, NUM_MEMORISED, QUESTION_ATTRIBUTES, value
from input_pipeline.tokenizer import EOS_ID, PAD_ID, train_tokenizer
from launch.results import results_table
from models.language_model import DecoderLM
from training import text_task
from training.loop import train_and_evaluate
from training.summary import format_summary
from training.validation import validate_config

NAMES = "|".join(ENTITIES)
STATEMENT = re.compile(rf"\bthe ({NAMES}) is (a )?(\w+) \.")  # lm_text.statement's two forms
RESTATEMENT = re.compile(rf"\b(\w+) is the (colour|shape) of the ({NAMES}) \.")


def statements(text: str) -> list[tuple[int, str, str]]:
    """(entity, attribute, value) of every "the <name> is [a] <value> ." in `text`."""
    return [(ENTITIES.index(n), "shape" if a else "colour", v) for n, a, v in STATEMENT.findall(text)]


def truths(facts) -> list[tuple[int, str, str]]:
    return sorted((e, a, value(e, a)) for e, a in facts)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(quality_text.QualitySource("web_text", 1500).tokenizer_corpus(), 600)


@pytest.mark.parametrize("split", ["train", "test"])
def test_document_i_of_both_corpora_states_the_same_facts_in_as_many_words(split):
    for i in range(400):
        facts = quality_text.facts(3, split, i)
        expository, web = quality_text.expository(3, split, i), quality_text.web(3, split, i)
        assert len(expository.split()) == len(web.split()), (expository, web)
        assert 2 <= len(facts) <= 3 and len(set(facts)) == len(facts)
        assert all(e < NUM_MEMORISED for e, _ in facts)
        # Expository: each true statement once in the probe's form, restated once, nothing false.
        assert sorted(statements(expository)) == truths(facts)
        restated = [(ENTITIES.index(n), a, v) for v, a, n in RESTATEMENT.findall(expository)]
        assert sorted(restated) == truths(facts)
        # Web: the same true statements once each; every other statement a false value of one of its facts.
        said = statements(web)
        true = [s for s in said if s[2] == value(s[0], s[1])]
        assert sorted(true) == truths(facts)
        assert all((e, a) in facts and v in QUESTION_ATTRIBUTES[a] for e, a, v in said)
        assert not RESTATEMENT.search(web)
    assert quality_text.web(3, split, 7) == quality_text.web(3, split, 7)  # a pure function of (seed, split, index)
    assert quality_text.expository(3, split, 7) != quality_text.expository(4, split, 7)


def test_web_contradicts_at_its_rate_and_the_truth_stays_every_facts_majority():
    counts = {}  # (entity, attribute) -> [true statements, false statements]
    for i in range(4000):
        for entity, attribute, said in statements(quality_text.web(0, "train", i)):
            counts.setdefault((entity, attribute), [0, 0])[said != value(entity, attribute)] += 1
    true, false = np.array(list(counts.values())).sum(0)
    p = quality_text.CONTRADICTION_RATE
    assert abs(false / true - p) < 4 * math.sqrt(p * (1 - p) / true)  # 4 standard errors of a binomial share
    assert len(counts) == NUM_MEMORISED * 2  # every memorised fact is taught
    assert all(t > f for t, f in counts.values()), "a fact whose false statements outnumber its true ones"


def test_both_arms_train_one_tokenizer_on_both_corpora_and_read_as_many_tokens(tokenizer):
    corpora = []
    for corpus in pints.CORPORA:
        config = pints.get_config(f"corpus={corpus}")
        config.data.train_size = 300
        corpora.append(list(text_task.corpus(text_task.make_source(config))))
    assert corpora[0] == corpora[1] and len(corpora[0]) == 600
    assert corpora[0][:2] == [quality_text.expository(0, "train", 0), quality_text.web(0, "train", 0)]
    tokens = [
        (tokenizer.encode([make(0, "train", i) for i in range(1000)], 200) != PAD_ID).sum()
        for make in quality_text.DOCUMENTS.values()
    ]
    assert abs(tokens[1] / tokens[0] - 1) < 0.03
    with pytest.raises(ValueError, match=r"Unknown 1.5-Pints corpus 'wiki'; use corpus= one of \['expository'"):
        pints.get_config("corpus=wiki")


def test_fact_prompts_are_the_statements_without_their_value():
    prompts = fact_prompts()
    assert len(prompts) == NUM_MEMORISED * 2
    colour, shape = prompts[:2]
    assert colour == (f"the {ENTITIES[0]} is", shapes.COLOURS, shapes.COLOURS.index(value(0, "colour")))
    assert shape == (f"the {ENTITIES[0]} is a", shapes.SHAPES, shapes.SHAPES.index(value(0, "shape")))


def test_fact_probe_against_a_hand_loop(tokenizer):
    model = DecoderLM(vocab_size=tokenizer.vocab_size, width=16, depth=1, heads=2, max_len=96, mlp_dim=0)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    texts = [quality_text.expository(0, "test", i) for i in range(5)]
    metrics = FactProbeEvaluator(model, tokenizer, texts=texts, batch_size=100).evaluate(params)

    def ids(text: str) -> list[int]:  # BOS and the pieces of the whole text, no EOS
        return [int(t) for t in tokenizer.encode([text], 200)[0] if t not in (PAD_ID, EOS_ID)]

    # Every candidate statement "the vokim is red" encoded whole; its value's pieces are those after the prompt's.
    rows, starts = [], []
    for entity in range(NUM_MEMORISED):
        for attribute, choices in (("colour", shapes.COLOURS), ("shape", shapes.SHAPES)):
            prompt = f"the {ENTITIES[entity]} is" + (" a" if attribute == "shape" else "")
            for choice in choices:
                rows.append(ids(f"{prompt} {choice}"))
                starts.append(len(ids(prompt)))
    log_p = _log_probs(model, params, rows)
    scores = np.array([sum(log_p[r, t - 1, row[t]] for t in range(s, len(row))) for r, (row, s) in
                       enumerate(zip(rows, starts, strict=True))]).reshape(NUM_MEMORISED * 2, 8)  # fmt: skip
    truth = np.array([c.index(value(e, a)) for e in range(NUM_MEMORISED)
                      for a, c in (("colour", shapes.COLOURS), ("shape", shapes.SHAPES))])  # fmt: skip
    np.testing.assert_allclose(metrics["fact_probe/accuracy"], 100 * np.mean(scores.argmax(1) == truth))
    np.testing.assert_allclose(metrics["fact_probe/true_log_prob"], scores[np.arange(96), truth].mean(), rtol=1e-5)
    documents = [ids(t) + [EOS_ID] for t in texts]
    log_p = _log_probs(model, params, documents)
    nll = [-log_p[r, t - 1, row[t]] for r, row in enumerate(documents) for t in range(1, len(row))]
    np.testing.assert_allclose(metrics["fact_probe/clean_loss"], np.mean(nll), rtol=1e-5)
    np.testing.assert_allclose(metrics["fact_probe/clean_perplexity"], np.exp(np.mean(nll)), rtol=1e-5)


def _log_probs(model, params, rows: list[list[int]]) -> np.ndarray:
    """float64 [N, L, vocab]: log-softmax of the model's logits over rows padded on the right (causal: padding after
    a position changes nothing at it)."""
    tokens = np.zeros((len(rows), max(map(len, rows))), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    out, _ = model.apply({"params": params}, jnp.asarray(tokens))
    logits = np.asarray(out["logits"], np.float64)
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_both_arms_train_end_to_end_on_one_tokenizer(tmp_path):
    summaries = {}
    for corpus in pints.CORPORA:
        config = pints.get_config(f"corpus={corpus}")
        config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
        config.batch_size, config.log_every_steps, config.optimizer.warmup_steps = 8, 1, 1
        config.data.train_size = 400
        config.eval.update(num_examples=16, batch_size=16)
        config.model.decoder.update(width=32, depth=1, heads=2)
        config.text.vocab_size = 400
        validate_config(config)
        summary = summaries[corpus] = train_and_evaluate(config, str(tmp_path / corpus))
        scores = summary["eval"]
        assert math.isfinite(summary["final_loss"]) and 0 <= scores["fact_probe/accuracy"] <= 100
        assert scores["fact_probe/true_log_prob"] < 0 < scores["fact_probe/clean_loss"]
        table = format_summary(config, summary)
        assert f"{scores['fact_probe/accuracy']:.1f}% of facts ranked first (chance 12.5%)" in table
        loss, perplexity = scores["fact_probe/clean_loss"], scores["fact_probe/clean_perplexity"]
        assert f"{loss:.4f}  (perplexity {perplexity:.3f})" in table
    assert (tmp_path / "expository" / "tokenizer.model").read_bytes() == (
        tmp_path / "web" / "tokenizer.model"
    ).read_bytes()
    table = results_table({corpus: [summary] for corpus, summary in summaries.items()})
    assert "| fact accuracy % | truth log-prob | clean NLL |" in table
    assert f"{summaries['web']['eval']['fact_probe/clean_loss']:.4f}" in table.splitlines()[-1]
