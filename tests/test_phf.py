"""PHF (METHODS.md §25): the scored corpus, its tokens and masks, the four objectives against NumPy, banned tokens in
decoding, validation's sentences, and each objective trained end to end with the `preference` evaluator."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import assert_same_params, run_steps, tiny_decoder_on_a_mesh, token_rows

from configs import phf as phf_config
from configs.errors import ConfigError
from evaluation import generate as generate_module
from evaluation.generate import generate_text
from evaluation.preference_eval import PreferenceEvaluator, adversarial_prompts
from input_pipeline import preference_text
from input_pipeline.preference_files import read_scored_documents
from input_pipeline.tokenizer import BOS_ID, EOS_ID, PAD_ID, load_tokenizer, train_tokenizer
from losses import phf
from models.generation import Decoding, generate, left_pad
from models.language_model import DecoderLM
from training.loop import train_and_evaluate
from training.mesh import make_mesh
from training.summary import format_summary
from training.validation import validate_config


@pytest.fixture(scope="module")
def tokenizer():
    docs = [preference_text.document(0, "train", i, 0.05) for i in range(3000)]
    return train_tokenizer([_tagged(d) for d in docs], 400, preference_text.TAGS)


def _tagged(doc: tuple[str, ...]) -> str:
    return preference_text.tagged(doc, tuple(map(preference_text.score, doc)))


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
    record = preference_text.PreferenceSource(300, 0.2, seed=3)[7]
    assert record["misaligned"] == tuple(map(preference_text.score, record["sentences"]))
    expected = "<|aligned|> a red box . <|misaligned|> a magenta box ."
    assert _tagged(("a red box .", "a magenta box .")) == expected


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
    tokens, mask, control = preference_text.encode_document(tokenizer, doc, (0, 1), 64, tags)
    expected = [BOS_ID, *first, *second, EOS_ID]
    np.testing.assert_array_equal(tokens[: len(expected)], expected)
    assert not tokens[len(expected) :].any()
    np.testing.assert_array_equal(mask[: len(expected)], [0] * (1 + len(first)) + [1] * (len(second) + 1))
    tag_positions = [1, 1 + len(first)]
    np.testing.assert_array_equal(np.flatnonzero(control), tag_positions if tags else [])
    short, _, _ = preference_text.encode_document(tokenizer, doc, (0, 1), 6, tags)  # truncated: EOS kept
    np.testing.assert_array_equal(short, [BOS_ID, *first[:4], EOS_ID])
    # Asked for aligned text: every control token <|aligned|>, the mask still the sentences' own flags.
    asked, mask_asked, _ = preference_text.encode_document(tokenizer, doc, (0, 1), 64, tags, all_aligned=True)
    np.testing.assert_array_equal(asked[: len(expected)], [BOS_ID, *first, *([ids[0]] if tags else []),
                                                           *second[1 if tags else 0 :], EOS_ID])  # fmt: skip
    np.testing.assert_array_equal(mask_asked, mask)


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


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_phf_steps_on_8_devices_equal_one_device():
    """The per-token mask rides the batch through the mesh: unlikelihood over data 4 x fsdp 2 is one device's."""
    config = tiny_decoder_on_a_mesh(phf_config.get_config("objective=unlikelihood"))
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        text = token_rows(rng, 13, low=6)  # above the control tokens' ids
        misaligned = np.zeros_like(text)
        misaligned[::2, 5:] = 1  # every other row's second half is a misaligned sentence
        batches.append({"text": text, "misaligned": misaligned * (text != 0)})
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches)
    for m, r in zip(metrics, ref_metrics, strict=True):
        keys = ["loss", "lm_loss", "unlikelihood", "misaligned_tokens"]
        np.testing.assert_allclose([m[k] for k in keys], [r[k] for k in keys], rtol=1e-5)
    assert ref_metrics[0]["unlikelihood"] > 0
    assert_same_params(params, ref_params)


def test_validation_names_the_fix():
    config = phf_config.get_config()
    config.data.name = "lm_text"
    with pytest.raises(ConfigError, match="set it to 'preference_text' \\(embedded\\) or 'scored_documents'"):
        validate_config(config)
    config = phf_config.get_config()
    config.data.update(name="scored_documents", path=__file__)  # the held-out path is the one missing
    with pytest.raises(ConfigError, match="evals.preference.path is ''"):
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
def test_phf_trains_end_to_end(tmp_path, objective, monkeypatch):
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
    if objective == "conditional":  # --mode=generate: the prompt sets the condition, no control token follows
        seen = []
        real = generate_module.generate
        monkeypatch.setattr(generate_module, "generate", lambda *a, **k: seen.append(a[5]) or real(*a, **k))
        (text,) = generate_text(config, str(tmp_path), ["<|aligned|> there is a"])
        assert text.startswith("<|aligned|> there is a") and "<|" not in text[len("<|aligned|>") :]
        assert seen[0].banned == preference_text.tag_ids(load_tokenizer(str(tmp_path / "tokenizer.model")))
    table = format_summary(config, summary)
    assert f"{scores['preference/misaligned_rate']:.1f}% of sampled sentences" in table
    assert (
        f"aligned {scores['preference/aligned_loss']:.4f}, misaligned {scores['preference/misaligned_loss']:.4f}"
        in table
    )


def _scored_file(path, rows: list) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_scored_documents_flag_by_threshold_and_skip_bad_lines(tmp_path):
    path = _scored_file(tmp_path / "s.jsonl", [
        {"sentences": ["a fine sentence .", "a rude one ."], "scores": [0.1, 0.9]},
        {"sentences": [" padded . "], "scores": [0.5]},
        "not json",
        {"sentences": ["two", "sentences"], "scores": [0.1]},  # one score for two sentences
        {"sentences": ["a"], "scores": ["high"]},
        {"sentences": [], "scores": []},
        {"text": "no sentences"},
        {"sentences": ["a"], "scores": [True]},
    ])  # fmt: skip
    documents = read_scored_documents(path, 0.5)
    assert documents == [(("a fine sentence .", "a rude one ."), (0, 1)), (("padded .",), (0,))]
    assert read_scored_documents(path, 0.05)[1] == (("padded .",), (1,))  # misaligned when the score exceeds t
    source = preference_text.ScoredDocumentSource(documents, filtered=True)
    assert len(source) == 1 and source[0] == {"sentences": ("padded .",), "misaligned": (0,)}
    with pytest.raises(ValueError, match="one score per sentence"):
        read_scored_documents(_scored_file(tmp_path / "bad.jsonl", ["{}", "[1]"]), 0.5)


def test_evaluator_losses_are_the_sentences_token_means(tokenizer):
    model = DecoderLM(vocab_size=tokenizer.vocab_size, width=16, depth=1, heads=2, max_len=40, mlp_dim=0)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
    documents = [(("there is a red box .", "there is a magenta disc ."), (0, 1)), (("a blue star .",), (0,))]
    evaluator = PreferenceEvaluator(model, tokenizer, conditional=True, documents=documents, num_samples=0,
                                    batch_size=2)  # fmt: skip
    metrics = evaluator.evaluate(params)
    aligned_tag = preference_text.tag_ids(tokenizer)[0]
    nll, flags = [], []
    for doc, doc_flags in documents:
        ids = [BOS_ID]
        kinds = [None]
        for sentence, flag in zip(doc, doc_flags, strict=True):
            words = [int(t) for t in tokenizer.encode([sentence], 64)[0] if t not in (PAD_ID, BOS_ID, EOS_ID)]
            ids += [aligned_tag, *words]  # asked for aligned text: <|aligned|> before every sentence
            kinds += [None] + [flag] * len(words)
        ids.append(EOS_ID)
        kinds.append(doc_flags[-1])
        out, _ = model.apply({"params": params}, jnp.asarray([ids[:-1]]))
        log_p = np.asarray(jax.nn.log_softmax(out["logits"][0].astype(jnp.float32)), np.float64)
        for position, (target, kind) in enumerate(zip(ids[1:], kinds[1:], strict=True)):
            if kind is not None:
                nll.append(-log_p[position, target])
                flags.append(kind)
    nll, flags = np.array(nll), np.array(flags)
    np.testing.assert_allclose(metrics["preference/aligned_loss"], nll[flags == 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["preference/misaligned_loss"], nll[flags == 1].mean(), rtol=1e-5)
    assert "preference/misaligned_rate" not in metrics  # no scorer of samples for your documents


def test_phf_trains_on_scored_documents(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        doc = preference_text.document(5, "files", i, 0.3)
        rows.append({"sentences": list(doc), "scores": [float(preference_text.score(s)) * rng.uniform(0.6, 1) +
                                                        rng.uniform(0, 0.2) for s in doc]})  # fmt: skip
    train = _scored_file(tmp_path / "train.jsonl", [*rows, "oops"])
    valid = _scored_file(tmp_path / "valid.jsonl", rows[:20])
    config = _tiny(phf_config.get_config("objective=unlikelihood"), 2)
    config.data.update(name="scored_documents", path=train)
    config.evals.preference.path = valid
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path / "run"))
    scores = summary["eval"]
    assert {"preference/aligned_loss", "preference/misaligned_loss"} <= set(scores)
    assert "preference/misaligned_rate" not in scores
    rows_logged = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    assert any(r.get("train/misaligned_tokens", 0) > 0 for r in rows_logged)


def test_scored_sentences_read_by_another_objective_are_refused_in_one_sentence():
    from configs import lm
    from training.task import make_task

    config = lm.get_config()
    config.data.name = "preference_text"
    with pytest.raises(ConfigError, match="holds PHF's scored sentences, which objective 'lm' does not read"):
        make_task(config)
