"""CLIMB (METHODS.md §26): the pacing curves against CLIMB's formulas, the vocabulary curriculum's ranking and
capping, the data curriculum's stream through the real pipeline, the word-class task's classes and masking, the
objective curriculum's windows, the checks before jax starts, and every curriculum trained end to end with the
`minimal_pairs` evaluator."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

from configs import climb as climb_config
from configs.errors import ConfigError
from input_pipeline import child_text
from input_pipeline.curriculum import CurriculumSource, piece_ranks
from input_pipeline.pipeline import make_train_iterator
from input_pipeline.text_transform import TaggedTextTransform
from input_pipeline.token_ids import UNK_ID
from input_pipeline.tokenizer import train_tokenizer
from launch.results import paired_table, results_table
from losses import climb, masked_lm
from losses.pacing import PACING_CURVES, Schedule, pacing
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.summary import format_summary
from training.validation import validate_config

T = 1000  # steps; CLIMB's start and end: 62.5 and 875, first difficulty 0.1


def climb_reference(curve: str, step: float) -> float:
    """CLIMB's src/data_curriculum/pacing_fn.py, transcribed (its int() of the span is 812 here, ours 812.5)."""
    start, end, b, top = 0.0625 * T, 0.875 * T, 0.1, 1.0
    span = end - start
    if step < start and curve != "step":
        return b
    x = step - start
    if curve == "linear":
        return min(b + (top - b) / span * x, top)
    if curve == "quad":
        return min(b + (top - b) / span**2 * x**2, top)
    if curve == "root":
        return min(b + (top - b) / span**0.5 * x**0.5, top)
    if curve == "exp":
        return min((top - b) / (math.exp(10) - 1) * (math.exp(x * 10 / span) - 1) + b, top)
    if curve == "log":
        return min((top - b) * (1 + math.log(x / span + math.exp(-10)) / 10) + b, top)
    return b if step < end else top  # step


@pytest.mark.parametrize("curve", PACING_CURVES)
def test_pacing_follows_climbs_curves_in_numpy_and_jax(curve):
    schedule = Schedule(curve, T)
    steps = [0, 30, 62, 63, 100, 250, 500, 700, 874, 875, 900, 1000, 5000]
    want = [climb_reference(curve, s) for s in steps]
    np.testing.assert_allclose([float(pacing(s, schedule)) for s in steps], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda s: pacing(s, schedule, xp=jnp))(jnp.array(steps))), want,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert np.all(np.diff(want) >= 0) and want[0] == 0.1 and want[-1] == 1.0


@pytest.fixture(scope="module")
def tokenizer():
    source = child_text.ChildTextSource(3000, seed=0)
    return train_tokenizer((source[i]["text"] for i in range(len(source))), 600)


def test_piece_ranks_order_the_learnt_pieces_by_probability_and_spare_the_rest(tokenizer):
    sp = spm.SentencePieceProcessor(model_proto=tokenizer.model_proto)
    ranks = piece_ranks(tokenizer)
    assert ranks.shape == (tokenizer.vocab_size,)
    spared = [i for i in range(tokenizer.vocab_size) if sp.is_byte(i) or sp.is_control(i) or sp.is_unknown(i)]
    assert len(spared) >= 256 + 4 and np.all(ranks[spared] == -1)
    learnt = np.flatnonzero(ranks >= 0)
    assert sorted(ranks[learnt]) == list(range(len(learnt)))
    by_rank = learnt[np.argsort(ranks[learnt])]
    scores = [sp.get_score(int(i)) for i in by_rank]
    assert all(a >= b for a, b in zip(scores, scores[1:], strict=False))  # most probable first


def test_the_vocabulary_curriculum_hides_all_but_the_first_share_of_the_ranked_pieces():
    ranks = jnp.array([-1, -1, -1, -1, 3, 0, -1, 1, 2, 4], jnp.int32)  # 5 ranked pieces; id 6 is a spared byte piece
    tokens = jnp.array([[2, 5, 7, 8, 4, 9, 6, 3, 0]], jnp.int32)
    # d = 0.4: ranks 0 and 1 stay (ids 5, 7); ranks 2, 3, 4 (ids 8, 4, 9) read as unknown; markers, padding stay.
    got = climb.capped_vocabulary(tokens, jnp.float32(0.4), ranks)
    np.testing.assert_array_equal(np.asarray(got), [[2, 5, 7, UNK_ID, UNK_ID, UNK_ID, 6, 3, 0]])
    np.testing.assert_array_equal(np.asarray(climb.capped_vocabulary(tokens, jnp.float32(1.0), ranks)), tokens)


class Ranked:
    """A toy source whose record i has difficulty `hardness[i]`."""

    def __init__(self, hardness):
        self.hardness = hardness

    def __len__(self):
        return len(self.hardness)

    def __getitem__(self, i):
        return {"text": "x", "pos": "NOUN", "index": i}


class Passthrough:
    uses_positions = False

    def random_map(self, record, rng):
        return {"index": np.int32(record["index"])}


def test_the_data_curriculum_draws_each_step_from_its_easiest_share_through_the_pipeline():
    rng = np.random.default_rng(0)
    hardness = rng.permutation(200).astype(float)  # record i is the hardness[i]-th easiest
    share = lambda step: min(1.0, 0.1 + 0.1 * step)  # noqa: E731
    source = CurriculumSource(Ranked(hardness), hardness, share, total_steps=12, global_batch_size=16, seed=3)
    batches = make_train_iterator(source, Passthrough(), global_batch_size=16, seed=3, read_threads=0)
    seen = []
    for step in range(12):
        ranks = hardness[np.asarray(next(batches)["index"])]
        assert ranks.max() < math.ceil(share(step) * 200), step  # never past the step's share
        seen.append(ranks)
    assert np.concatenate(seen[9:]).max() > 150  # the full source is reached

    def first(**kw):
        return next(make_train_iterator(source, Passthrough(), global_batch_size=16, seed=3, read_threads=0, **kw))[
            "index"
        ]

    np.testing.assert_array_equal(hardness[first()], seen[0])  # the stream is a pure function of the position
    # Two processes read the global stream's alternate records: each global batch's halves, so the same steps.
    for k in range(2):
        np.testing.assert_array_equal(first(process_index=k, process_count=2), first()[k::2])


def test_tagged_transform_gives_each_piece_its_words_class(tokenizer):
    record = {"text": "look at the big dogs !", "pos": "VERB ADP DET ADJ NOUN PUNCT"}
    ids, word_tags = child_text.word_piece_tags(tokenizer, record["text"], record["pos"], 24)
    example = TaggedTextTransform(tokenizer, 24, ("NOUN", "VERB")).random_map(record, None)
    np.testing.assert_array_equal(example["text"], ids)
    tags = child_text.POS_TAGS
    want = [-1 if t < 0 else {"NOUN": 1, "VERB": 2}.get(tags[t], 0) for t in word_tags]
    np.testing.assert_array_equal(example["tags"], want)
    assert {1, 2, 0, -1} <= set(example["tags"].tolist())
    every = TaggedTextTransform(tokenizer, 24, tags).random_map(record, None)["tags"]
    np.testing.assert_array_equal(every, np.where(word_tags < 0, -1, word_tags + 1))


def test_masking_takes_a_probability_per_token():
    rng = np.random.default_rng(1)
    tokens = jnp.array(rng.integers(4, 90, size=(300, 40)), jnp.int32)
    probability = jnp.where(jnp.arange(40) < 20, 0.4, 0.15)  # CLIMB: the class's words at 0.4, the others 0.15
    _, chosen = masked_lm.mask_pieces(tokens, jax.random.PRNGKey(0), 99, probability)
    chosen = np.asarray(chosen)
    assert abs(chosen[:, :20].mean() - 0.4) < 0.015 and abs(chosen[:, 20:].mean() - 0.15) < 0.015


def _climb_setup(tokenizer, curriculum: str, **climb_options):
    config = climb_config.get_config(f"curriculum={curriculum}")
    config.model.text.update(width=32, depth=1, heads=2, mlp_dim=64, max_len=24)
    config.climb.update(climb_options)
    model = build_model(config, tokenizer.vocab_size)
    tokens = np.stack([TaggedTextTransform(tokenizer, 24, tuple(config.climb.pos_classes)).random_map(
        child_text.document(0, "train", i), None) for i in range(8)])  # fmt: skip
    batch = {"text": jnp.array([t["text"] for t in tokens]), "tags": jnp.array([t["tags"] for t in tokens])}
    params = model.init(jax.random.PRNGKey(0), tokens=batch["text"])["params"]
    extra = climb.init_extra(params, config, {"piece_rank": piece_ranks(tokenizer)})
    return config, model, params, batch, extra


def test_the_objective_curriculum_trains_each_task_in_its_window_only(tokenizer):
    config, model, params, batch, extra = _climb_setup(tokenizer, "objective")
    assert model.text_tag_classes == 3 and params["tag_output"]["kernel"].shape[-1] == 3  # other, NOUN, VERB
    loss = lambda p, step: climb.loss(p, batch, {**extra, "step": jnp.int32(step)}, jax.random.PRNGKey(2),  # noqa: E731
                                      model=model, config=config)  # fmt: skip
    # pos window [0, 0.125) of 1200 steps = steps 0..149, mlm window from step 150
    for step, task, idle in ((0, "pos", "mlm"), (149, "pos", "mlm"), (150, "mlm", "pos"), (1199, "mlm", "pos")):
        (value, metrics), grads = jax.value_and_grad(loss, has_aux=True)(params, step)
        assert float(value) == pytest.approx(float(metrics[task])) and metrics[f"{idle}_on"] == 0
        idle_head = "mlm_bias" if idle == "mlm" else "tag_output"
        assert not any(np.any(np.asarray(g)) for g in jax.tree.leaves(grads[idle_head])), (step, idle_head)
        assert any(np.any(np.asarray(g)) for g in jax.tree.leaves(grads["text_tower"]))


def test_the_vocabulary_curriculum_in_the_loss_hides_pieces_by_the_pacing(tokenizer):
    config, model, params, batch, extra = _climb_setup(tokenizer, "vocabulary")
    ranks = piece_ranks(tokenizer)
    for step in (0, 400, 1100):
        d = float(pacing(step, climb.schedule(config)))
        _, metrics = climb.loss(params, batch, {**extra, "step": jnp.int32(step)}, jax.random.PRNGKey(0), model=model,
                                config=config)  # fmt: skip
        tokens = np.asarray(batch["text"])
        pieces = tokens[(tokens >= 4) | (tokens == UNK_ID)]
        hidden = (ranks[pieces] >= d * (ranks.max() + 1)) | (pieces == UNK_ID)
        assert float(metrics["unknown_share"]) == pytest.approx(hidden.mean()), step
    assert float(metrics["unknown_share"]) == 0.0  # past 87.5% of the steps nothing is hidden


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("climb.pacing", "cubic", "config.climb.pacing='cubic' is not one of"),
        ("climb.vocabulary", "pos_tags", "config.climb.vocabulary='pos_tags' is not one of"),
        ("climb.pacing_end", 0.05, "must satisfy 0 <= start < end <= 1"),
        ("climb.mlm_window", (0.5, 0.2), "config.climb.mlm_window=(0.5, 0.2) must be (start, end)"),
        ("climb.pos_classes", ("NOUN", "NOUNS"), "must name distinct tags, at least one, of"),
        ("data.name", "lm_text", "CLIMB's a word-class task reads the registers and parts of speech"),
        ("evals.minimal_pairs.per_phenomenon", 0, "per_phenomenon must be at least 1"),
    ],
)
def test_bad_settings_are_refused_before_jax_starts(key, value, message):
    config = climb_config.get_config("curriculum=objective")
    section, _, name = key.rpartition(".")
    target = config
    for part in section.split("."):
        target = target[part]
    target[name] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_config(config)


def test_minimal_pairs_needs_a_climb_run():
    from configs import simcse
    from configs.evaluators import evaluator

    config = simcse.get_config()
    config.evals.minimal_pairs = evaluator("minimal_pairs", prefix="")
    with pytest.raises(ConfigError, match="only CLIMB's runs train"):
        validate_config(config)


def test_the_vocabulary_and_objective_curricula_train_end_to_end_and_report_the_pairs(tmp_path):
    """The two curricula that change the loss (docs/text.md's commands train the baseline and the data curriculum
    through main.py at a tiny size)."""
    summaries = {}
    for curriculum in ("vocabulary", "objective"):
        config = climb_config.get_config(f"curriculum={curriculum}")
        config.model.text.update(width=32, depth=1, heads=2, mlp_dim=64, max_len=32)
        config.update(total_steps=16, eval_every_steps=16, checkpoint_every_steps=16, batch_size=16)
        config.optimizer.warmup_steps = 2
        config.data.train_size = 400
        config.eval.num_examples = 10
        config.evals.minimal_pairs.per_phenomenon = 5
        config.text.vocab_size = 400
        validate_config(config)
        summary = summaries[curriculum] = train_and_evaluate(config, str(tmp_path / curriculum))
        scores = summary["eval"]
        assert math.isfinite(summary["final_loss"]) and scores["minimal_pairs/pseudo_perplexity"] > 1
        assert all(scores[f"minimal_pairs/{p}"] in (0, 20, 40, 60, 80, 100) for p in child_text.PHENOMENA)
        assert f"{scores['minimal_pairs/accuracy']:.1f}% right (chance 50%)" in format_summary(config, summary)
    # one tokenizer for every arm: the curricula compare piece for piece
    models = {(tmp_path / c / "tokenizer.model").read_bytes() for c in summaries}
    assert len(models) == 1
    table = results_table({c: [s] for c, s in summaries.items()})
    assert "| pairs % | agreement % | attractor % | determiner % | adjective order % | pseudo-perplexity |" in table
    paired = paired_table({c: [s] for c, s in summaries.items()}, "vocabulary", [0])
    assert "| config − vocabulary | pairs % | agreement % |" in paired
    difference = (
        summaries["objective"]["eval"]["minimal_pairs/accuracy"]
        - summaries["vocabulary"]["eval"]["minimal_pairs/accuracy"]
    )
    assert f"| objective | {difference:+.1f} 1/1" in paired or f"| objective | {difference:+.1f} 0/1" in paired
