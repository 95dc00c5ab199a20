"""PCP (METHODS.md §22): the judgements' labels against the grammar read from the words independently, the label
slot and words in the tokenizer, the prompt loss and the `prompt_accuracy` evaluator against NumPy, that the prompt
never reads its label, the checks before jax starts, and the paper's pipeline (pretrain -> prompt -> PCP on the
prompt run's pseudo-labels -> prompt) trained end to end through the training loop."""

from __future__ import annotations

import collections
import logging
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.pcp_chain import ARMS, pseudo_label_agreement, waves
from configs import pcp as pcp_config
from configs.errors import ConfigError
from evaluation.prompt_eval import PromptEvaluator
from input_pipeline import acceptability_text, child_text
from input_pipeline.tokenizer import train_tokenizer
from launch.results import paired_table, results_table
from losses import pcp
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.objective_inputs import prepare_inputs
from training.pseudo_labels import pseudo_labelled_pool
from training.summary import format_summary
from training.trained_runs import load_trained_run
from training.validation import validate_config


@pytest.fixture(scope="module")
def tokenizer():
    """A tokenizer of the child corpus with the label words as pieces, as configs/pcp.py:stage=pretrain trains."""
    source = child_text.ChildTextSource(2000, 0)
    return train_tokenizer((source[i]["text"] for i in range(len(source))), 400, acceptability_text.VERBALIZER)


_NUMBER = {}  # word -> True if plural, for nouns, demonstratives and the verb forms that show number
for _pair in child_text.ANIMALS + child_text.THINGS:
    _NUMBER.update({_pair[0]: False, _pair[1]: True})
for _verb in child_text.ANIMAL_VERBS + child_text.THING_VERBS + child_text.TRANSITIVE_VERBS:
    _NUMBER.update({_verb[0]: True, _verb[1]: False})
_NUMBER.update({"is": False, "are": True, "this": False, "that": False, "these": True, "those": True})


def _grammatical(sentence: str, phenomenon: str) -> bool:
    """The judgement read from the words alone: number agreement, determiner number or size-before-colour."""
    words = sentence.split()
    nouns = [i for i, w in enumerate(words) if w in _NUMBER and w not in _VERB_FORMS and w not in _DETERMINERS]
    if phenomenon == "adjective_order":
        size = next(i for i, w in enumerate(words) if w in child_text.SIZES)
        colour = next(i for i, w in enumerate(words) if w in child_text.COLOURS)
        return size < colour
    if phenomenon == "determiner":
        return _NUMBER[words[0]] == _NUMBER[words[nouns[0]]]
    head = nouns[1] if phenomenon == "attractor" else nouns[0]  # the verb follows the subject's last noun
    return _NUMBER[words[nouns[0]]] == _NUMBER[words[head + 1]]


_VERB_FORMS = {w for v in child_text.ANIMAL_VERBS + child_text.THING_VERBS + child_text.TRANSITIVE_VERBS
               for w in v[:2]} | {"is", "are"}  # fmt: skip
_DETERMINERS = {"this", "that", "these", "those"}


def test_a_sentence_is_labelled_grammatical_exactly_when_its_grammar_holds():
    records = acceptability_text.pool(800)
    for r in records:
        assert r["label"] == int(_grammatical(r["sentence"], r["phenomenon"])), r
    counts = collections.Counter(r["phenomenon"] for r in records)
    assert set(counts) == set(child_text.PHENOMENA) and min(counts.values()) > 150  # each about a quarter
    assert 0.45 < np.mean([r["label"] for r in records]) < 0.55


def test_the_labelled_shots_are_balanced_per_seed_and_the_streams_differ():
    shots = acceptability_text.labelled(3, 16)
    assert collections.Counter(r["label"] for r in shots) == {0: 16, 1: 16}
    assert shots != acceptability_text.labelled(4, 16)
    texts = {
        split: {acceptability_text.raw_text(r) for r in acceptability_text.pool(300, split)}
        for split in ("unlabelled", "test")
    }
    assert len(texts["unlabelled"] & texts["test"]) < 15  # independent streams (equal texts only by chance)


def test_the_slot_holds_the_label_words_piece(tokenizer):
    verbalizer = acceptability_text.verbalizer_ids(tokenizer)
    assert [tokenizer.id_to_piece(int(i)) for i in verbalizer] == list(acceptability_text.VERBALIZER)
    for record in acceptability_text.pool(20):
        for label in (0, 1):
            example = acceptability_text.prompt_example(tokenizer, acceptability_text.prompt_record(record, label), 48)
            assert example["text"][example["slot"]] == verbalizer[label]
            assert example["label"] == label


def test_label_words_in_several_pieces_are_refused_in_one_sentence():
    source = child_text.ChildTextSource(2000, 0)
    plain = train_tokenizer((source[i]["text"] for i in range(len(source))), 400)  # "yes" is two pieces there
    config = pcp_config.get_config()
    with pytest.raises(ConfigError, match="splits the label word 'yes' into 2 pieces.*stage=pretrain run"):
        prepare_inputs(config, None, plain)


def _tiny_model(tokenizer, stage="prompt"):
    config = pcp_config.get_config(f"stage={stage}")
    config.model.text.update(width=32, depth=1, heads=2, mlp_dim=64, max_len=48, dropout_rate=0.0)
    model = build_model(config, tokenizer.vocab_size)
    params = model.init(jax.random.key(0), tokens=jnp.zeros((2, 48), jnp.int32))["params"]
    return config, model, params


def test_the_prompt_loss_is_the_verbalizers_cross_entropy_at_the_masked_slot(tokenizer):
    config, model, params = _tiny_model(tokenizer)
    verbalizer = acceptability_text.verbalizer_ids(tokenizer)
    records = acceptability_text.pool(6)
    examples = [
        acceptability_text.prompt_example(tokenizer, acceptability_text.prompt_record(r, r["label"]), 48)
        for r in records
    ]
    batch = {k: jnp.asarray(np.stack([e[k] for e in examples])) for k in ("text", "label", "slot")}
    value, metrics = pcp.loss(params, batch, {"verbalizer": jnp.asarray(verbalizer)}, jax.random.key(1), model=model,
                              config=config)  # fmt: skip
    # NumPy: mask the slot by hand, full-vocabulary logits from the model, the two label words' columns
    tokens = np.array(batch["text"])
    mask_id = tokenizer.vocab_size  # the row after the vocabulary
    tokens[np.arange(6), np.array(batch["slot"])] = mask_id
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(tokens), method=model.mlm_logits), np.float64)
    scores = logits[np.arange(6), np.array(batch["slot"])][:, verbalizer]
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    labels = np.array(batch["label"])
    assert float(value) == pytest.approx(-log_p[np.arange(6), labels].mean(), rel=1e-5)
    assert float(metrics["prompt_accuracy"]) == pytest.approx(np.mean(scores.argmax(1) == labels))
    # the label word at the slot is never read: the other word there gives the same loss
    flipped = dict(batch, text=jnp.where(batch["text"] == verbalizer[1], verbalizer[0], batch["text"]))
    again, _ = pcp.loss(params, flipped, {"verbalizer": jnp.asarray(verbalizer)}, jax.random.key(1), model=model,
                        config=config)  # fmt: skip
    assert float(again) == pytest.approx(float(value), rel=1e-6)


def test_the_evaluator_counts_the_argmax_of_the_label_words_per_phenomenon(tokenizer):
    config, model, params = _tiny_model(tokenizer)
    evaluator = PromptEvaluator(model, tokenizer, max_len=48, num_examples=40, batch_size=16)
    metrics = evaluator.evaluate(params)
    verbalizer = acceptability_text.verbalizer_ids(tokenizer)
    records = acceptability_text.pool(40, "test")
    right, kinds = [], []
    for r in records:
        example = acceptability_text.prompt_example(tokenizer, acceptability_text.prompt_record(r, 1), 48)
        tokens = example["text"].copy()
        tokens[example["slot"]] = tokenizer.vocab_size
        logits = np.asarray(model.apply({"params": params}, jnp.asarray(tokens[None]), method=model.mlm_logits))
        right.append(int(np.argmax(logits[0, example["slot"], verbalizer])) == r["label"])
        kinds.append(r["phenomenon"])
    right, kinds = np.array(right), np.array(kinds)
    assert metrics["prompt/accuracy"] == pytest.approx(100 * right.mean())
    for kind in child_text.PHENOMENA:
        assert metrics[f"prompt/{kind}"] == pytest.approx(100 * right[kinds == kind].mean())


@pytest.mark.parametrize(
    "stage, key, value, message",
    [
        ("prompt", "pcp.stage", "finetune", "config.pcp.stage='finetune' is not one of"),
        ("pcp", "pcp.labeller", "", "stage='pcp' trains on pseudo-labelled text; set config.pcp.labeller"),
        ("prompt", "pcp.labeller", "random", "is read only by stage='pcp'"),
        ("prompt", "data.name", "child_text", "PCP's stage 'prompt' reads the judgements' template"),
        ("pcp", "pcp.labeller", "/nonexistent/run", "holds no checkpoints; train a configs/pcp.py:stage=prompt run"),
        ("prompt", "pcp.shots", 0, "must be at least 1"),
    ],
)
def test_bad_settings_are_refused_before_jax_starts(stage, key, value, message):
    config = pcp_config.get_config(f"stage={stage}")
    section, _, name = key.rpartition(".")
    config[section][name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(config)


def test_a_pretrained_wordpiece_tokenizer_is_refused(tmp_path):
    config = pcp_config.get_config()
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nyes\nno\n")
    config.text.update(tokenizer="wordpiece", tokenizer_path=str(vocabulary))
    with pytest.raises(ConfigError, match="set config.text.tokenizer='sentencepiece'"):
        validate_config(config)


def test_prompt_accuracy_needs_a_pcp_run():
    from configs import climb
    from configs.evaluators import evaluator

    config = climb.get_config()
    config.evals.prompt_accuracy = evaluator("prompt_accuracy", prefix="")
    with pytest.raises(ConfigError, match="only PCP's runs train for it"):
        validate_config(config)


def test_the_chain_runs_each_arm_after_the_runs_it_reads():
    done = set()
    for wave in waves():
        for arm in wave:
            _, start, labeller = ARMS[arm]
            assert {start, labeller} - {"", "random"} <= done, arm
        done.update(wave)
    assert done == set(ARMS)


def _tiny(stage: str, init: str = "", labeller: str = ""):
    config = pcp_config.get_config(f"stage={stage}")
    config.model.text.update(width=32, depth=1, heads=2, mlp_dim=64)
    config.update(total_steps=6, eval_every_steps=6, checkpoint_every_steps=6, batch_size=16)
    config.optimizer.warmup_steps = 1
    config.data.train_size = 400
    config.text.vocab_size = 400
    config.eval.num_examples = 20
    config.pcp.update(unlabelled_size=64, shots=4)
    config.init_from.workdir, config.pcp.labeller = init, labeller
    validate_config(config)
    return config


def test_the_papers_pipeline_trains_end_to_end(tmp_path, caplog):
    """pretrain -> prompt (the labeller) -> PCP on its pseudo-labels, from the pretrained run -> prompt again."""
    runs = {name: str(tmp_path / name) for name in ("mlm", "prompt", "pcp", "pcp_prompt")}
    summaries = {"mlm": train_and_evaluate(_tiny("pretrain"), runs["mlm"])}
    summaries["prompt"] = train_and_evaluate(_tiny("prompt", runs["mlm"]), runs["prompt"])
    caplog.set_level(logging.INFO)
    caplog.clear()
    summaries["pcp"] = train_and_evaluate(_tiny("pcp", runs["mlm"], runs["prompt"]), runs["pcp"])
    pcp_log = caplog.text
    summaries["pcp_prompt"] = train_and_evaluate(_tiny("prompt", runs["pcp"]), runs["pcp_prompt"])
    # one tokenizer down the chain, with the label words as pieces
    assert len({(tmp_path / name / "tokenizer.model").read_bytes() for name in runs}) == 1
    for name, summary in summaries.items():
        scores = summary["eval"]
        assert math.isfinite(summary["final_loss"]) and 0 <= scores["prompt/accuracy"] <= 100, name
        assert f"{scores['prompt/accuracy']:.1f}% right at the prompt's slot" in format_summary(
            _tiny("pretrain"), summary
        )
    # the pseudo-labels are the labeller's argmax at the slot, and the chain's agreement counts them against gold
    records, labels, agreement = pseudo_labelled_pool(_tiny("pcp", runs["mlm"], runs["prompt"]))
    model, tokenizer, params, _ = load_trained_run(_tiny("prompt", runs["mlm"]), runs["prompt"])
    verbalizer = acceptability_text.verbalizer_ids(tokenizer)
    expected = []
    for r in records:
        example = acceptability_text.prompt_example(tokenizer, acceptability_text.prompt_record(r, 0), 48)
        tokens = example["text"].copy()
        tokens[example["slot"]] = tokenizer.vocab_size
        logits = np.asarray(model.apply({"params": params}, jnp.asarray(tokens[None]), method=model.mlm_logits))
        expected.append(int(np.argmax(logits[0, example["slot"], verbalizer])))
    np.testing.assert_array_equal(labels, expected)
    gold = np.array([r["label"] for r in records])
    assert agreement == pytest.approx(100 * np.mean(labels == gold))
    assert pseudo_label_agreement(runs["pcp"]) == pytest.approx(agreement)
    # PCP starts from the pretrained MLM, not from the labeller (training/loop.py logs where its parameters came from)
    initialised = [line for line in pcp_log.splitlines() if "Initialised" in line]
    assert len(initialised) == 1 and initialised[0].endswith(f"from step 6 of {runs['mlm']}")
    assert f"Pseudo-labelled 64 texts with {runs['prompt']} (step 6)" in pcp_log
    table = results_table({n: [s] for n, s in summaries.items()})
    assert "| judgements % | agreement judged % | attractor judged % |" in table
    assert "| config − prompt | judgements % |" in paired_table({n: [s] for n, s in summaries.items()}, "prompt", [0])
    assert os.path.isfile(os.path.join(runs["pcp_prompt"], "summary.json"))
