"""MEND: the in-context tasks (answers that only the demonstrations give), the token layout that lines the
teacher's positions up with the student's, the KL and CE against NumPy, the distiller's summary slots, the
in-context evaluator on a hand-made model, validation before jax starts, and both stages from end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import fake_run, set_keys

from configs import mend
from configs.errors import ConfigError
from evaluation.in_context_eval import InContextEvaluator, _rows, _scores
from input_pipeline import icl_tasks
from input_pipeline.token_ids import BOS_ID, EOS_ID
from input_pipeline.tokenizer import train_tokenizer
from losses.mend import answer_cross_entropy, kl_divergence, mend_loss, teacher_logits
from models.language_model import DecoderLM
from models.mend import MendModel, distiller_from_language_model
from training.loop import train_and_evaluate
from training.summary import format_summary
from training.validation import validate_config


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def tokenizer():
    texts = [icl_tasks.record(0, "train", i)["text"] for i in range(2000)]
    return train_tokenizer(texts, 1000, icl_tasks.SYMBOLS)


def test_a_task_is_answered_by_its_demonstrations_alone():
    for split in ("train", "test"):
        for i in range(50):
            r = icl_tasks.record(0, split, i)
            words = r["demos"].split(f" {icl_tasks.SEPARATOR} ")
            assert len(words) == icl_tasks.NUM_DEMOS
            mapping = dict(w.split() for w in words)  # each input shown maps to one output
            assert all(f"{a} {mapping[a]}" in words for a in mapping)
            asked = r["query"].split()[-1]
            assert r["answer"] == mapping[asked] and r["answer"] in r["choices"]
            assert r["text"] == f"{r['demos']} {r['query']} {r['answer']}"
            assert r == icl_tasks.record(0, split, i)  # a pure function of (seed, split, index)
    # The held-out split's maps are not the training split's, and a map is drawn afresh per task.
    assert icl_tasks.record(0, "train", 3) != icl_tasks.record(0, "test", 3)
    answers = {icl_tasks.record(0, "train", i)["answer"] for i in range(200)}
    assert len(answers) == 16  # every colour and shape answers some task
    r = {"demos": "red star and blue ring and pink star and cyan bar", "answer": "star"}
    assert icl_tasks.frequent_output_accuracy(r) == 1.0
    assert icl_tasks.frequent_output_accuracy({**r, "answer": "ring"}) == 0.0
    tie = {"demos": "red star and blue ring", "answer": "ring"}
    assert icl_tasks.frequent_output_accuracy(tie) == 0.5


def test_the_layout_lines_up_the_pieces_of_every_field(tokenizer):
    transform = icl_tasks.MendTransform(tokenizer, lm_len=48, distiller_len=48, virtual_tokens=4)
    for i in range(20):
        r = icl_tasks.record(0, "test", i)
        out = transform.map(r)
        demos, query, answer = (icl_tasks.pieces(tokenizer, r[k]) for k in ("demos", "query", "answer"))
        assert len(demos) == 3 * icl_tasks.NUM_DEMOS - 1 and len(query) == 2 and len(answer) == 1  # one piece a word
        # The whole text tokenized at once has the same pieces as its parts apart: the teacher's positions are known.
        assert icl_tasks.pieces(tokenizer, r["text"]) == demos + query + answer
        text = [BOS_ID, *demos, *query, *answer, EOS_ID]
        np.testing.assert_array_equal(out["text"][: len(text)], text)
        assert out["text"].shape == (49,) and not out["text"][len(text) :].any()
        np.testing.assert_array_equal(out["query"][:5], [BOS_ID, *query, *answer, EOS_ID])
        assert out["query"].shape == (45,) and not out["query"][5:].any()
        np.testing.assert_array_equal(out["demos"][: len(demos)], demos)
        assert not out["demos"][len(demos) :].any()
        assert (int(out["demo_length"]), int(out["answer_start"])) == (len(demos), 3)
        assert out["query"][out["answer_start"]] == answer[0]
    with pytest.raises(ValueError, match="raise config.mend.distiller.max_len"):
        icl_tasks.MendTransform(tokenizer, lm_len=48, distiller_len=32, virtual_tokens=4).map(r)
    with pytest.raises(ValueError, match="raise config.model.decoder.max_len"):
        icl_tasks.MendTransform(tokenizer, lm_len=32, distiller_len=48, virtual_tokens=4).map(r)


def test_teacher_positions_are_the_logits_of_in_context_learning_before_each_target():
    """teacher_logits picks, for query target j, the full text's logits at demo_length + j: the same as the
    language model's last logits on (BOS, D, x_<=j) cut there (causal attention)."""
    lm = DecoderLM(vocab_size=40, width=32, depth=2, heads=2, max_len=24)
    rng = np.random.default_rng(0)
    demo_lengths, query = [7, 4], rng.integers(4, 40, size=(2, 5)).astype(np.int32)
    text = np.zeros((2, 20), np.int32)
    for row, n in enumerate(demo_lengths):
        text[row, : 1 + n + 5] = [BOS_ID, *rng.integers(4, 40, size=n), *query[row]]
    params = lm.init(jax.random.PRNGKey(0), jnp.asarray(text))["params"]
    full = lm.apply({"params": params}, jnp.asarray(text))[0]["logits"]
    got = np.asarray(teacher_logits(full, jnp.asarray(demo_lengths), 4))
    for row, n in enumerate(demo_lengths):
        for j in range(4):
            cut = text[row : row + 1, : 1 + n + j]  # (BOS, D, query[:j]): its last position predicts query[j]
            want = lm.apply({"params": params}, jnp.asarray(cut))[0]["logits"][0, -1]
            np.testing.assert_allclose(got[row, j], np.asarray(want), rtol=1e-5, atol=1e-5)


def test_kl_and_answer_cross_entropy_against_numpy():
    rng = np.random.default_rng(1)
    teacher, student = rng.normal(size=(3, 6, 9)) * 2, rng.normal(size=(3, 6, 9)) * 2
    weights = (rng.random((3, 6)) < 0.6).astype(np.float32)
    targets = rng.integers(0, 9, size=(3, 6))
    log_p, log_q = _log_softmax(teacher), _log_softmax(student)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    want_kl = (kl * weights).sum() / weights.sum()
    want_ce = -(np.take_along_axis(log_q, targets[..., None], -1)[..., 0] * weights).sum() / weights.sum()
    got_kl = kl_divergence(jnp.asarray(teacher, jnp.float32), jnp.asarray(student, jnp.float32), jnp.asarray(weights))
    got_ce = answer_cross_entropy(jnp.asarray(student, jnp.float32), jnp.asarray(targets), jnp.asarray(weights))
    np.testing.assert_allclose([float(got_kl), float(got_ce)], [want_kl, want_ce], rtol=1e-5)
    assert float(kl_divergence(jnp.asarray(teacher), jnp.asarray(teacher), jnp.asarray(weights))) == pytest.approx(0)


def _mend_model(vocab=40, k=3):
    lm = DecoderLM(vocab_size=vocab, width=32, depth=1, heads=2, max_len=24)
    return MendModel(lm, DecoderLM(vocab_size=vocab + k, width=16, depth=1, heads=2, max_len=20), k)


def _batch(rng, demo_lengths=(9, 6)):
    b = len(demo_lengths)
    demos, text = np.zeros((b, 20), np.int32), np.zeros((b, 25), np.int32)
    query = np.zeros((b, 22), np.int32)
    for row, n in enumerate(demo_lengths):
        d, q = rng.integers(4, 40, size=n), rng.integers(4, 40, size=3)  # q: x (2 pieces) and y (1)
        demos[row, :n] = d
        text[row, : n + 5] = [BOS_ID, *d, *q, EOS_ID]
        query[row, :5] = [BOS_ID, *q, EOS_ID]
    return {"demos": demos, "demo_length": np.array(demo_lengths, np.int32), "text": text, "query": query,
            "answer_start": np.full(b, 3, np.int32)}  # fmt: skip


def test_summary_vectors_read_the_demonstrations_and_nothing_after_them():
    model, rng = _mend_model(), np.random.default_rng(2)
    batch = _batch(rng)
    params = model.init(jax.random.PRNGKey(0), batch["demos"], batch["demo_length"], batch["query"][:, :-1])["params"]
    assert set(params) == {"lm", "distiller", "project"}
    assert params["distiller"]["token_embedding"]["embedding"].shape == (43, 16)  # the LM's vocabulary + k summary ids

    def summary(demos):
        return np.asarray(model.apply({"params": params}, demos, batch["demo_length"], method=model.summarise))

    s = summary(batch["demos"])
    assert s.shape == (2, 3, 32)
    after = batch["demos"].copy()
    after[0, 12:], after[1, 9:] = 7, 8  # past the summary slots (9..11 and 6..8): invisible to causal attention
    np.testing.assert_allclose(summary(after), s, atol=1e-6)
    changed = batch["demos"].copy()
    changed[0, 0] = 4 if changed[0, 0] != 4 else 5  # one demonstration token of row 0
    moved = summary(changed)
    assert np.abs(moved[0] - s[0]).max() > 1e-4
    np.testing.assert_allclose(moved[1], s[1], atol=1e-6)


def test_the_distiller_starts_as_a_copy_of_the_language_model():
    lm = DecoderLM(vocab_size=40, width=16, depth=1, heads=2, max_len=20)
    model = MendModel(lm, lm.clone(vocab_size=43, parent=None), 3)
    batch = _batch(np.random.default_rng(5))
    params = model.init(jax.random.PRNGKey(0), batch["demos"], batch["demo_length"], batch["query"][:, :-1])["params"]
    copied = distiller_from_language_model(params, 3, seed=0)
    lm_leaves = jax.tree_util.tree_leaves_with_path(params["lm"])
    distiller = dict(jax.tree_util.tree_leaves_with_path(copied["distiller"]))
    assert set(distiller) == {path for path, _ in lm_leaves}
    for path, value in lm_leaves:
        if "token_embedding" not in jax.tree_util.keystr(path):
            np.testing.assert_array_equal(distiller[path], value)
    embedding = copied["distiller"]["token_embedding"]["embedding"]
    lm_embedding = params["lm"]["token_embedding"]["embedding"]
    np.testing.assert_array_equal(embedding[:40], lm_embedding)
    summary_rows = [int(np.flatnonzero((lm_embedding == row).all(-1))[0]) for row in embedding[40:]]
    assert len(set(summary_rows)) == 3  # each a distinct vocabulary row
    assert copied["lm"] is params["lm"] and copied["project"] is params["project"]
    # The copy reads the demonstrations as the language model does: its hidden states at the demos are the LM's.
    out = lm.clone(vocab_size=43, parent=None).apply({"params": copied["distiller"]}, batch["demos"])[0]["hidden"]
    want = lm.apply({"params": params["lm"]}, batch["demos"])[0]["hidden"]
    np.testing.assert_allclose(np.asarray(out)[0, :9], np.asarray(want)[0, :9], rtol=1e-5, atol=1e-6)


def test_loss_is_ce_on_the_answer_plus_kl_to_in_context_learning():
    model, rng = _mend_model(), np.random.default_rng(3)
    batch = _batch(rng)
    params = model.init(jax.random.PRNGKey(1), batch["demos"], batch["demo_length"], batch["query"][:, :-1])["params"]
    config = mend.get_config()
    config.mend.ce_weight, config.mend.kd_weight = 0.7, 0.4
    loss, metrics = mend_loss(params, batch, {}, None, model=model, config=config)
    # NumPy: student logits from [S_D, query], teacher from the full text, positions by hand.
    student = model.apply({"params": params}, batch["demos"], batch["demo_length"], batch["query"][:, :-1])[0]
    student = np.asarray(student["logits"], np.float64)
    full = np.asarray(model.lm.apply({"params": params["lm"]}, batch["text"][:, :-1])[0]["logits"], np.float64)
    kl_terms, ce_terms = [], []
    for row, n in enumerate(batch["demo_length"]):
        for j in range(4):  # targets: x[1], y, EOS... query[1..4] = x0 x1 y EOS
            log_p, log_q = _log_softmax(full[row, n + j]), _log_softmax(student[row, j])
            kl_terms.append((np.exp(log_p) * (log_p - log_q)).sum())
            if j + 1 >= 3:  # y and EOS
                ce_terms.append(-log_q[batch["query"][row, j + 1]])
    np.testing.assert_allclose(
        [float(metrics["kd_loss"]), float(metrics["answer_loss"])], [np.mean(kl_terms), np.mean(ce_terms)], rtol=1e-5
    )
    np.testing.assert_allclose(float(loss), 0.7 * np.mean(ce_terms) + 0.4 * np.mean(kl_terms), rtol=1e-5)
    assert float(metrics["tokens"]) == 8
    # The language model's params get no gradient from the KL's teacher side: only through the student's reading.
    config.mend.ce_weight = 0.0
    grads = jax.grad(lambda p: mend_loss(p, batch, {}, None, model=model, config=config)[0])(params)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads["distiller"])) > 0


def test_evaluator_ranks_candidates_by_their_summed_log_probability():
    rng = np.random.default_rng(4)
    tokens, targets = _rows([[BOS_ID, 5, 6], [BOS_ID, 7]], [[[8], [9, 10]], [[11], [12]]], 6)
    np.testing.assert_array_equal(tokens, [[2, 5, 6, 8, 0, 0], [2, 5, 6, 9, 10, 0], [2, 7, 11, 0, 0, 0],
                                           [2, 7, 12, 0, 0, 0]])  # fmt: skip
    np.testing.assert_array_equal(targets[1], [False, False, True, True, False])  # 9 and 10, predicted at 2 and 3
    logits = rng.normal(size=(4, 5, 13))
    want = [sum(_log_softmax(logits[r, t])[tokens[r, t + 1]] for t in range(5) if targets[r, t]) for r in range(4)]
    np.testing.assert_allclose(np.asarray(_scores(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(targets))),
                               want, rtol=1e-5)  # fmt: skip


def test_in_context_evaluator_scores_a_model_that_copies_the_demonstrations(tokenizer):
    """A language model whose logits are set by hand to copy the word after the query's earlier occurrence in the
    text answers every held-out task from its demonstrations and none better than chance without them."""
    evaluator = InContextEvaluator(
        DecoderLM(vocab_size=tokenizer.vocab_size, width=16, depth=1, heads=2, max_len=48), tokenizer,
        num_examples=40, batch_size=8,
    )  # fmt: skip
    assert evaluator.tokens == {"full_tokens": 3 * icl_tasks.NUM_DEMOS + 2, "zero_shot_tokens": 3}

    def copying_scores(tokens, mask):
        scores = []
        for row, targets in zip(tokens, mask, strict=True):
            t = int(np.argmax(targets)) + 1  # the candidate's (one) piece
            earlier = [i for i in range(1, t - 1) if row[i] == row[t - 1] and (i == 1 or row[i - 1] == row[t - 2])]
            scores.append(1.0 if earlier and row[earlier[-1] + 1] == row[t] else 0.0)
        return np.array(scores)

    evaluator._lm_scores = lambda params, tokens, mask: copying_scores(np.asarray(tokens), np.asarray(mask))
    metrics = evaluator.evaluate({})
    assert metrics["full"] == 100.0 and metrics["chance"] == 12.5
    assert metrics["zero_shot"] == 100.0 * np.mean(evaluator.truth == 0)  # all scores 0: the first candidate


def test_validation_names_the_fix_before_jax_starts(tmp_path):
    icl_run = fake_run(tmp_path / "icl", mend.get_config("stage=icl"))
    text_run = fake_run(tmp_path / "lm", set_keys(mend.get_config("stage=icl"), {"data.name": "lm_text"}))

    def config_with(**changes):
        config = mend.get_config()
        config.mend.lm_workdir = icl_run
        return set_keys(config, changes)

    validate_config(config_with())
    validate_config(mend.get_config("stage=icl"))
    for changes, message in (
        ({"mend.lm_workdir": ""}, "set config.mend.lm_workdir"),
        ({"mend.lm_workdir": str(tmp_path / "nowhere")}, "holds no run_info.json"),
        ({"mend.lm_workdir": text_run}, "did not train on the in-context tasks"),
        ({"model.decoder.width": 64, "mend.distiller_init": "random"}, "--config.model.decoder.width=96"),
        ({"data.name": "lm_text"}, "set it to 'icl_tasks'"),
        ({"mend.virtual_tokens": 0}, "virtual_tokens must be at least 1"),
        ({"mend.ce_weight": 0.0, "mend.kd_weight": 0.0}, "not both 0"),
        ({"mend.distiller.heads": 5, "mend.distiller_init": "random"}, "needs heads dividing the width"),
        ({"mend.distiller.depth": 2}, "must be config.model.decoder's (96, 3, 4, 48)"),
        ({"mend.distiller_init": "gpt2"}, "Unknown config.mend.distiller_init 'gpt2'"),
        ({"model.kind": "decoder"}, "config.model.kind both to 'mend'"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            validate_config(config_with(**changes))
    lm_text = set_keys(mend.get_config("stage=icl"), {"data.name": "lm_text"})
    with pytest.raises(ConfigError, match="scores held-out tasks of the embedded 'icl_tasks'"):
        validate_config(lm_text)
    assert (mend.get_config("arm=ce").mend.kd_weight, mend.get_config("arm=kd").mend.ce_weight) == (0.0, 0.0)
    with pytest.raises(ValueError, match="use stage=icl"):
        mend.get_config("stage=pretrain")


def _tiny(config, steps):
    config.total_steps = config.checkpoint_every_steps = config.eval_every_steps = steps
    config.batch_size, config.optimizer.warmup_steps = 8, 0
    config.eval.num_examples = config.eval.batch_size = 16
    config.data.train_size = 64
    return config


def test_language_model_then_distiller_from_end_to_end(tmp_path):
    """Stage icl trains a language model on the tasks (its evaluator: full and zero-shot); MEND reads its tokenizer
    and params, trains the distiller alone and reports all three ways of answering."""
    icl = train_and_evaluate(_tiny(mend.get_config("stage=icl"), 3), str(tmp_path / "icl"))
    assert {"in_context/full", "in_context/zero_shot"} <= set(icl["eval"]) and "in_context/mend" not in icl["eval"]
    config = _tiny(mend.get_config(), 3)
    config.mend.lm_workdir = str(tmp_path / "icl")
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path / "mend"))
    got = summary["eval"]
    assert 0 <= got["in_context/mend"] <= 100 and got["in_context/chance"] == 12.5
    assert got["in_context/mend_tokens"] == 4 + 3 and got["in_context/full"] == icl["eval"]["in_context/full"]
    with open(tmp_path / "icl" / "tokenizer.model", "rb") as a, open(tmp_path / "mend" / "tokenizer.model", "rb") as b:
        assert a.read() == b.read()
    rows = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    assert any("train/kd_loss" in r and "train/answer_loss" in r for r in rows)
    table = format_summary(config, summary)
    assert f"from MEND vectors {got['in_context/mend']:.1f}% (7 tokens)" in table
    assert f"from demonstrations {got['in_context/full']:.1f}% (32 tokens)" in table


def test_a_comparison_of_mend_runs_shows_its_accuracies():
    from launch.results import results_table

    run = lambda mend, full: {"wall_time_s": 60.0, "eval": {"in_context/mend": mend, "in_context/full": full,  # noqa: E731
                              "in_context/zero_shot": 12.0, "in_context/agreement": mend}}  # fmt: skip
    icl = {"wall_time_s": 60.0, "eval": {"in_context/full": 99.0}}
    table = results_table({"mend": [run(40.0, 100.0), run(50.0, 100.0)], "icl": [icl]})
    header, _, mend_row, icl_row = table.splitlines()[:4]
    assert header.split("|")[4:8] == [" MEND % ", " in-context % ", " zero-shot % ", " agreement % "]
    assert "45.0 ± 7.1" in mend_row and "100.0 ± 0.0" in mend_row
    assert icl_row.split("|")[4].strip() == "—" and "99.0" in icl_row


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_mend_steps_on_8_devices_equal_one_device():
    """The distiller trains over a data x fsdp mesh as on one device (the frozen language model does not move)."""
    from tiny_training import assert_same_params, run_steps, tiny_decoder_on_a_mesh

    from training.mesh import make_mesh

    config = tiny_decoder_on_a_mesh(mend.get_config())
    config.mend.virtual_tokens = 2
    config.mend.distiller.update(width=32, depth=1, heads=2, max_len=12)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, demo_lengths=tuple(rng.integers(3, 8, size=16))) for _ in range(2)]
    for b in batches:  # the tiny sizes: demos of 12 slots, queries of 11, texts of 13
        b["demos"], b["query"], b["text"] = b["demos"][:, :12], b["query"][:, :11], b["text"][:, :13]
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches)
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose([m["loss"], m["kd_loss"]], [r["loss"], r["kd_loss"]], rtol=1e-5)
    assert_same_params(params, ref_params)
    first = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches[:0])[0]
    jax.tree.map(np.testing.assert_array_equal, params["lm"], first["lm"])  # frozen
    assert not np.allclose(params["project"]["kernel"], first["project"]["kernel"])


def test_in_context_evaluator_reads_each_task_s_vectors_before_each_candidate(tokenizer):
    """The evaluator's MEND accuracy equals the whole model's, run row by row on each task's demonstrations."""
    vocab = tokenizer.vocab_size
    lm = DecoderLM(vocab_size=vocab, width=16, depth=1, heads=2, max_len=48)
    model = MendModel(lm, lm.clone(vocab_size=vocab + 2, parent=None), 2)
    evaluator = InContextEvaluator(model, tokenizer, num_examples=12, batch_size=5, demo_len=48)
    demos = jnp.zeros((1, 48), jnp.int32)
    params = model.init(jax.random.PRNGKey(3), demos, jnp.zeros((1,), jnp.int32), jnp.zeros((1, 46), jnp.int32))
    metrics = evaluator.evaluate(params["params"])
    tokens, mask = evaluator.query
    want = []
    for task in range(12):
        rows = slice(8 * task, 8 * task + 8)
        out = model.apply(params, jnp.repeat(evaluator.demos[task : task + 1], 8, axis=0),
                          jnp.repeat(evaluator.demo_length[task : task + 1], 8), tokens[rows, :-1])[0]  # fmt: skip
        want.append(np.asarray(_scores(out["logits"], jnp.asarray(tokens[rows]), jnp.asarray(mask[rows]))))
    got = evaluator._mend_scores(params["params"], evaluator.demos, evaluator.demo_length, tokens, mask)
    np.testing.assert_allclose(np.asarray(got), np.concatenate(want), rtol=1e-5, atol=1e-5)
    picks = np.concatenate(want).reshape(12, 8).argmax(-1)
    assert metrics["mend"] == pytest.approx(100 * np.mean(picks == evaluator.truth))
    assert metrics["mend_tokens"] == 2 + 3
