"""COCONUT (METHODS.md §21): the class-incremental split, NSPT and the whole loss against NumPy, the evaluator and
the chain's metrics against hand-made numbers, the checks before jax, and two experiences trained end to end."""

from __future__ import annotations

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.coconut_chain import chain_metrics
from configs import coconut as coconut_config
from configs.errors import ConfigError
from input_pipeline import shapes, transforms
from input_pipeline.class_incremental import ClassIncrementalSource, seen_classes, task_classes
from losses import coconut
from losses.objectives import get_objective
from tests.tiny_training import fake_run
from training.loop import train_and_evaluate
from training.summary import format_summary
from training.trained_runs import load_trained_run
from training.validation import validate_config


def _log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _unit(rng, n, d=6):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nspt_reference(s, t, labels, replay, tau):
    """The formula of METHODS.md §21, anchor by anchor, over the rehearsal samples only."""
    losses = []
    for i in np.flatnonzero(replay):
        positives = [p for p in np.flatnonzero(replay) if labels[p] == labels[i]]
        negatives = [n for n in np.flatnonzero(replay) if labels[n] != labels[i]]
        z = sum(math.exp(s[i] @ t[p] / tau) for p in positives) + sum(math.exp(s[i] @ s[n] / tau) for n in negatives)
        losses.append(-np.mean([s[i] @ t[p] / tau - math.log(z) for p in positives]))
    return float(np.mean(losses)) if losses else 0.0


def test_nspt_matches_the_formula_anchor_by_anchor():
    rng = np.random.default_rng(0)
    s, t = _unit(rng, 10), _unit(rng, 10)
    labels = np.array([0, 0, 1, 1, 2, 0, 1, 3, 3, 2])
    replay = np.array([1, 1, 1, 0, 1, 0, 1, 1, 0, 0], bool)  # class 3 and 2 have one rehearsal sample each
    got = coconut.nspt_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels), jnp.asarray(replay), 0.1)
    assert float(got) == pytest.approx(nspt_reference(s, t, labels, replay, 0.1), rel=1e-5)
    none = coconut.nspt_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(labels), jnp.zeros(10, bool), 0.1)
    assert float(none) == 0.0


def test_nspt_gives_the_teacher_no_gradient_and_ignores_new_samples():
    rng = np.random.default_rng(1)
    s, t = jnp.asarray(_unit(rng, 8)), jnp.asarray(_unit(rng, 8))
    labels, replay = jnp.asarray([0, 1, 0, 1, 2, 2, 0, 1]), jnp.asarray([1, 1, 1, 1, 0, 0, 0, 0], bool)
    grad_s, grad_t = jax.grad(coconut.nspt_loss, argnums=(0, 1))(s, t, labels, replay, 0.1)
    assert float(jnp.abs(grad_t).max()) == 0.0
    assert float(jnp.abs(grad_s[4:]).max()) == 0.0 and float(jnp.abs(grad_s[:4]).max()) > 0


class FakeModel:
    """model.apply that returns fixed outputs per params: the loss's arithmetic alone, no towers."""

    def apply(self, variables, images=None, tokens=None):
        p = variables["params"]
        out = {"image_embedding": p["image"], "logit_scale": jnp.asarray(0.0)}
        if "logits" in p:
            out["class_logits"] = p["logits"]
        if tokens is not None:
            out["text_embedding"] = p["text"]
        return out


def test_the_loss_is_ce_over_seen_classes_plus_the_weighted_terms():
    rng = np.random.default_rng(2)
    b = 12
    image, text, teacher = _unit(rng, b), _unit(rng, b), _unit(rng, b)
    logits = rng.normal(size=(b, 8)).astype(np.float32)
    logits[:, 6] = 50.0  # a class not yet seen at experience 1 of 4 (classes 0-3): must not count
    labels = rng.integers(0, 4, b)
    replay = np.arange(b) < 5
    config = coconut_config.get_config("task=1,arm=nspt_mm")
    config.coconut.update(nspt_weight=0.7, mm_weight=0.3, temperature=0.2)
    params = {"image": jnp.asarray(image), "text": jnp.asarray(text), "logits": jnp.asarray(logits)}
    extra = {"teacher": {"image": jnp.asarray(teacher), "text": jnp.asarray(text)}}
    batch = {"image": jnp.zeros((b, 1)), "text": jnp.zeros((b, 1), jnp.int32), "class_label": jnp.asarray(labels),
             "replay": jnp.asarray(replay)}  # fmt: skip
    loss = get_objective("coconut").loss
    total, metrics = loss(params, batch, extra, None, model=FakeModel(), config=config)
    ce = -np.mean(_log_softmax(logits[:, :4])[np.arange(b), labels])
    nspt = nspt_reference(image, teacher, labels, replay, 0.2)
    # MM: SupCon over the new samples both ways, positives every same-class pair across the modalities
    new = ~replay
    sim = image[new] @ text[new].T / 0.2
    same = labels[new][:, None] == labels[new][None, :]
    i2t = -np.sum(_log_softmax(sim, 1) * same, 1) / same.sum(1)
    t2i = -np.sum(_log_softmax(sim.T, 1) * same.T, 1) / same.sum(0)
    mm = np.mean(0.5 * (i2t + t2i))
    assert float(metrics["ce"]) == pytest.approx(ce, rel=1e-5)
    assert float(metrics["nspt"]) == pytest.approx(nspt, rel=1e-5)
    assert float(metrics["mm"]) == pytest.approx(mm, rel=1e-5)
    assert float(total) == pytest.approx(ce + 0.7 * nspt + 0.3 * mm, rel=1e-5)
    assert float(metrics["replay_fraction"]) == pytest.approx(5 / 12)


class FakeShapes:
    """A source of records with a `shape` label and `num_objects`."""

    def __init__(self, shapes_, objects):
        self.records = [
            {"shape": np.int32(s), "num_objects": np.int32(n)} for s, n in zip(shapes_, objects, strict=True)
        ]

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]


def test_an_experience_holds_its_classes_one_object_images_and_the_first_samples_of_earlier_classes():
    rng = np.random.default_rng(3)
    labels, objects = rng.integers(0, 8, 400), rng.integers(1, 4, 400)
    source = FakeShapes(labels, objects)
    assert task_classes(2, 4, 8) == (4, 5) and seen_classes(2, 4, 8) == (0, 1, 2, 3, 4, 5)
    experience = ClassIncrementalSource(source, "shape", task=2, tasks=4, buffer_per_class=3, replay_fraction=0.0)
    records = [experience[i] for i in range(len(experience))]
    single = objects == 1
    expected_current = [i for i in range(400) if single[i] and labels[i] in (4, 5)]
    expected_buffer = [i for c in range(4) for i in [j for j in range(400) if single[j] and labels[j] == c][:3]]
    assert list(experience.indices) == expected_current + expected_buffer
    assert [bool(r["replay"]) for r in records] == [False] * len(expected_current) + [True] * 12
    assert [int(r["class_label"]) for r in records] == [labels[i] for i in expected_current + expected_buffer]
    # replay_fraction repeats the buffer until it is at least that share of the experience
    repeated = ClassIncrementalSource(source, "shape", task=2, tasks=4, buffer_per_class=3, replay_fraction=0.25)
    share = repeated.is_replay.mean()
    assert share >= 0.25 and repeated.repeats == math.ceil(0.25 * len(expected_current) / (0.75 * 12))
    first = ClassIncrementalSource(source, "shape", task=0, tasks=4, buffer_per_class=3, replay_fraction=0.25)
    assert not first.is_replay.any() and len(first) == sum(single & (labels < 2))


def test_a_class_too_small_for_the_buffer_is_refused_in_one_sentence():
    source = FakeShapes([0, 0, 1, 2, 3], [1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="class 1 has fewer than 2 training examples.*lower config.coconut"):
        ClassIncrementalSource(source, "shape", task=1, tasks=4, buffer_per_class=2, replay_fraction=0.0)


def test_forgetting_is_the_best_earlier_accuracy_minus_the_last():
    evals = [
        {"incremental/accuracy": 90.0, "incremental/task_0": 90.0},
        {"incremental/accuracy": 70.0, "incremental/task_0": 60.0, "incremental/task_1": 80.0},
        {"incremental/accuracy": 50.0, "incremental/task_0": 40.0, "incremental/task_1": 30.0,
         "incremental/task_2": 80.0},
    ]  # fmt: skip
    metrics = chain_metrics(evals)
    assert metrics["average incremental accuracy"] == pytest.approx(70.0)
    assert metrics["final accuracy"] == 50.0
    assert metrics["forgetting"] == pytest.approx(((90 - 40) + (80 - 30)) / 2)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("coconut.tasks", 3, "does not split the 8 classes evenly"),
        ("coconut.task", 4, "config.coconut.task=4 is not an experience of 4"),
        ("coconut.label", "size", "config.coconut.label='size' is no class label"),
        ("coconut.replay_fraction", 1.0, "is outside [0, 1)"),
        ("coconut.temperature", 0.0, "must be positive"),
        ("data.name", "webdataset", "COCONUT's experiences split the embedded shapes' classes"),
        ("model.image_classes", 0, "config.model.image_classes=0 is not the 8 classes"),
    ],
)
def test_bad_settings_are_refused_before_jax_starts(key, value, message):
    config = coconut_config.get_config()
    section, _, name = key.rpartition(".")
    config[section][name] = value
    config.data.path = "shards-{000..001}.tar"  # read by data.name='webdataset' only
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_config(config)


def test_a_later_experience_must_start_from_the_one_before(tmp_path):
    config = coconut_config.get_config("task=2")
    with pytest.raises(ConfigError, match="set config.init_from.workdir to it"):
        validate_config(config)
    config.init_from.workdir = fake_run(tmp_path / "e0", coconut_config.get_config("task=0"))
    with pytest.raises(ConfigError, match="is no configs/coconut.py run of experience 1 of 4"):
        validate_config(config)
    config.init_from.workdir = fake_run(tmp_path / "e1", coconut_config.get_config("task=1"))
    validate_config(config)


def test_class_incremental_needs_a_coconut_run():
    from configs import clip
    from configs.evaluators import evaluator

    config = clip.get_config()
    config.evals.class_incremental = evaluator("class_incremental", prefix="")
    with pytest.raises(ConfigError, match="use it with configs/coconut.py"):
        validate_config(config)


def _tiny(task: int, arm: str, init: str = ""):
    config = coconut_config.get_config(f"task={task},arm={arm}")
    config.model.image.update(width=32, depth=1, heads=2, patch_size=8, conv_stem_depth=0)
    config.model.text.update(width=32, depth=1, heads=2)
    config.model.embed_dim = 16
    config.data.update(image_size=32, train_size=600, cache_dir="")
    config.update(total_steps=4, eval_every_steps=4, checkpoint_every_steps=4, batch_size=16)
    config.optimizer.warmup_steps = 1
    config.eval.num_examples = 40
    config.coconut.update(tasks=2, buffer_per_class=4)
    config.init_from.workdir = init
    validate_config(config)
    return config


def test_two_experiences_train_end_to_end_and_the_evaluator_scores_the_seen_classes(tmp_path, caplog):
    first, second = str(tmp_path / "e0"), str(tmp_path / "e1")
    summary0 = train_and_evaluate(_tiny(0, "nspt_mm"), first)
    caplog.set_level(logging.INFO)
    caplog.clear()
    config = _tiny(1, "nspt_mm", first)
    summary1 = train_and_evaluate(config, second)
    assert "Initialised" in caplog.text and f"from step 4 of {first}" in caplog.text
    assert set(summary0["eval"]) == {"incremental/accuracy", "incremental/task_0"}
    assert set(summary1["eval"]) == {"incremental/accuracy", "incremental/task_0", "incremental/task_1",
                                     "incremental/old"}  # fmt: skip
    # the evaluator against the trained head read here: test images of the 8 seen classes, argmax over them
    model, _, params, _ = load_trained_run(config, second)
    source = shapes.ShapesSource("test", 40, seed=0, image_size=32)
    labels = np.array([source[i]["shape"] for i in range(40)])
    images = transforms.normalize_image(np.stack([source[i]["image"] for i in range(40)]))
    logits = np.asarray(model.apply({"params": params}, jnp.asarray(images))["class_logits"])
    right = np.argmax(logits, 1) == labels  # tasks=2: experience 1 has seen all 8 classes
    assert summary1["eval"]["incremental/accuracy"] == pytest.approx(100 * right.mean())
    assert summary1["eval"]["incremental/task_0"] == pytest.approx(100 * right[labels < 4].mean())
    assert summary1["eval"]["incremental/old"] == pytest.approx(100 * right[labels < 4].mean())
    assert summary1["eval"]["incremental/task_1"] == pytest.approx(100 * right[labels >= 4].mean())
    assert math.isfinite(summary1["final_loss"])
    assert "seen classes" in format_summary(config, summary1)
