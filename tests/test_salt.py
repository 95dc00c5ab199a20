"""SALT: the distillation term against NumPy, the loss's two phases, a teacher equal to the student (no pull),
validation before jax starts, and the small model trained and distilled from end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import VOCAB, assert_same_params, fake_run, run_steps, set_keys

from configs import salt
from configs.errors import ConfigError
from losses.language import lm_loss
from losses.salt import distillation_loss, salt_loss
from models.language_model import DecoderLM
from training.loop import train_and_evaluate
from training.mesh import make_mesh
from training.validation import validate_config


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _numpy_distillation(logits, teacher_logits, targets):
    q = np.exp(_log_softmax(teacher_logits))
    per_token = -(q * _log_softmax(logits)).sum(-1)
    real = targets != 0
    return per_token[real].mean()


def test_distillation_is_the_cross_entropy_to_the_teacher_over_real_targets():
    rng = np.random.default_rng(0)
    logits, teacher = rng.normal(size=(3, 5, 11)) * 3, rng.normal(size=(3, 5, 11)) * 3
    targets = rng.integers(1, 11, size=(3, 5))
    targets[0, 3:], targets[2, 1:] = 0, 0  # padding weighs nothing
    got = distillation_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(teacher, jnp.float32), jnp.asarray(targets))
    np.testing.assert_allclose(float(got), _numpy_distillation(logits, teacher, targets), rtol=1e-5)


def _models_and_batch(teacher_sizes=None):
    config = salt.get_config()
    sizes = dict(width=32, depth=1, heads=2, max_len=12, mlp_dim=0)
    config.model.decoder.update(sizes)
    config.salt.teacher.update(teacher_sizes or dict(sizes, width=16, heads=2))
    student = DecoderLM(vocab_size=30, width=32, depth=1, heads=2, max_len=12)
    teacher = DecoderLM(vocab_size=30, **config.salt.teacher)
    tokens = np.random.default_rng(1).integers(3, 30, size=(4, 11)).astype(np.int32)
    tokens[1, 7:], tokens[3, 4:] = 0, 0
    init = lambda model, seed: model.init(jax.random.PRNGKey(seed), jnp.asarray(tokens[:, :-1]))["params"]  # noqa: E731
    return config, student, init(student, 0), teacher, init(teacher, 1), {"text": jnp.asarray(tokens)}


def test_loss_mixes_the_terms_while_distilling_then_is_the_cross_entropy_alone():
    config, student, params, teacher, teacher_params, batch = _models_and_batch()
    config.salt.weight, config.salt.kd_steps = 0.3, 5
    tokens = np.asarray(batch["text"])
    logits = np.asarray(student.apply({"params": params}, tokens[:, :-1])[0]["logits"], np.float64)
    teacher_logits = np.asarray(teacher.apply({"params": teacher_params}, tokens[:, :-1])[0]["logits"], np.float64)
    targets = tokens[:, 1:]
    real = targets != 0
    ce = -np.take_along_axis(_log_softmax(logits), targets[..., None], -1)[..., 0][real].mean()
    kd = _numpy_distillation(logits, teacher_logits, targets)

    def loss_at(step):
        extra = {"teacher": teacher_params, "step": jnp.asarray(step, jnp.int32)}
        return salt_loss(params, batch, extra, None, model=student, config=config)

    early, metrics = loss_at(4)
    np.testing.assert_allclose(float(early), 0.7 * ce + 0.3 * kd, rtol=1e-5)
    np.testing.assert_allclose([float(metrics["lm_loss"]), float(metrics["kd_loss"])], [ce, kd], rtol=1e-5)
    assert float(metrics["kd_weight"]) == pytest.approx(0.3)
    late, metrics = loss_at(5)
    assert float(metrics["kd_weight"]) == 0.0
    np.testing.assert_allclose(float(late), ce, rtol=1e-5)
    # After the distillation phase the gradient is plain maximum likelihood's, to the bit.
    grad = jax.grad(lambda p: salt_loss(p, batch, {"teacher": teacher_params, "step": 5}, None, model=student,
                                        config=config)[0])(params)  # fmt: skip
    lm_grad = jax.grad(lambda p: lm_loss(p, batch, {}, None, model=student, config=None)[0])(params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), grad, lm_grad)


def test_a_teacher_equal_to_the_student_pulls_nowhere():
    """d CE(q, p) / d logits = p - q: zero where the teacher predicts as the student does; and the teacher gets no
    gradient (the params in `extra` are constants)."""
    sizes = dict(width=32, depth=1, heads=2, max_len=12, mlp_dim=0)
    config, student, params, _, _, batch = _models_and_batch(teacher_sizes=sizes)
    config.salt.weight, config.salt.kd_steps = 1.0, 10

    def loss(p, teacher_params):
        extra = {"teacher": teacher_params, "step": jnp.asarray(0, jnp.int32)}
        return salt_loss(p, batch, extra, None, model=student, config=config)[0]

    student_grad, teacher_grad = jax.grad(loss, argnums=(0, 1))(params, params)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(student_grad)) < 1e-6
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(teacher_grad)) == 0.0


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_salt_steps_on_8_devices_equal_one_device():
    """The small model's params ride in the state's `extra`, sharded by the same rules; one step distils, the next
    does not."""
    config = salt.get_config()
    config.model.decoder.update(width=32, depth=1, heads=2, max_len=12)
    config.salt.teacher.update(width=16, depth=1, heads=2, max_len=12)
    config.salt.kd_steps, config.batch_size, config.optimizer.warmup_steps = 1, 16, 0
    config.mesh.min_shard_size = 256
    teacher = DecoderLM(vocab_size=VOCAB, **config.salt.teacher)
    tokens = jnp.zeros((1, 12), jnp.int32)
    inputs = {"teacher": jax.device_get(teacher.init(jax.random.PRNGKey(3), tokens)["params"])}
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        text = rng.integers(4, VOCAB, size=(16, 13)).astype(np.int32)
        text[:, 0], text[::3, 9:] = 2, 0
        batches.append({"text": text})
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches, inputs=inputs)
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches, inputs=inputs)
    assert [float(m["kd_weight"]) for m in metrics] == [0.5, 0.0]
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose([m["loss"], m["kd_loss"]], [r["loss"], r["kd_loss"]], rtol=1e-5)
    assert_same_params(params, ref_params)


def test_validation_names_the_fix_before_jax_starts(tmp_path):
    teacher_run = fake_run(tmp_path / "slm", salt.get_config("stage=teacher"))
    student_run = fake_run(tmp_path / "student", salt.get_config())
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run_info.json").write_text(json.dumps({"config": salt.get_config("stage=teacher").to_dict()}))

    def config_with(**changes):
        config = salt.get_config()
        config.salt.teacher_workdir = teacher_run
        return set_keys(config, changes)

    validate_config(config_with())
    for changes, message in (
        ({"salt.teacher_workdir": ""}, "set config.salt.teacher_workdir"),
        ({"salt.teacher_workdir": str(tmp_path / "nowhere")}, "teacher_workdir '" + str(tmp_path / "nowhere")),
        ({"salt.teacher_workdir": str(empty)}, "holds no tokenizer.model"),
        ({"salt.teacher.width": 32}, "--config.salt.teacher.width=64"),
        ({"salt.weight": 1.5}, "config.salt.weight=1.5 is outside [0, 1]"),
        ({"salt.kd_steps": -1}, "config.salt.kd_steps=-1 is negative"),
        ({"model.decoder.max_len": 64}, "config.salt.teacher.max_len (48) is shorter"),
        ({"model.kind": "two_tower"}, "set config.model.kind='decoder'"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            validate_config(config_with(**changes))
    config = config_with()
    config.salt.teacher_workdir = student_run  # a run, but with the student's sizes
    with pytest.raises(ConfigError, match="--config.salt.teacher.width=128"):
        validate_config(config)
    # The record passes; reading the params finds no finished checkpoint, and says which key named the run.
    from training.objective_inputs import prepare_inputs

    params = {"token_embedding": {"embedding": jax.ShapeDtypeStruct((1000, 128), jnp.float32)}}
    with pytest.raises(ConfigError, match=r"config\.salt\.teacher_workdir '.*' holds no complete checkpoint"):
        prepare_inputs(config_with(), params)
    assert salt.get_config("kd=none").salt.weight == 0.0
    config = salt.get_config("kd=all")
    config.total_steps = 2000
    assert config.salt.kd_steps == 2000  # follows the run's length


def _tiny(config, steps):
    config.total_steps = config.checkpoint_every_steps = steps
    config.eval_every_steps = steps
    config.batch_size, config.optimizer.warmup_steps = 8, 0
    config.eval.num_examples = config.eval.batch_size = 16
    return config


def test_small_model_then_salt_from_end_to_end(tmp_path):
    """The small model trains as a language model; SALT reads its tokenizer and params, distils for kd_steps
    steps (train/kd_weight w, then 0) and, resumed, stays in its second phase."""
    teacher_config = _tiny(salt.get_config("stage=teacher"), 3)
    train_and_evaluate(teacher_config, str(tmp_path / "slm"))
    config = _tiny(salt.get_config(), 4)
    config.log_every_steps, config.salt.kd_steps = 1, 2
    config.salt.teacher_workdir = str(tmp_path / "slm")
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path / "salt"))
    assert summary["eval"]["language/perplexity"] > 1
    with open(tmp_path / "slm" / "tokenizer.model", "rb") as a, open(tmp_path / "salt" / "tokenizer.model", "rb") as b:
        assert a.read() == b.read()
    rows = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    weights = {r["step"]: r["train/kd_weight"] for r in rows if "train/kd_weight" in r}
    assert weights == {1: 0.5, 2: 0.5, 3: 0.0, 4: 0.0}
    losses = {r["step"]: (r["train/loss"], r["train/lm_loss"]) for r in rows if "train/loss" in r}
    assert losses[1][0] != losses[1][1] and losses[4][0] == losses[4][1]
    # Resumed for two more steps, the phase counter continues from the checkpoint: no distillation again.
    config.total_steps = 6
    train_and_evaluate(config, str(tmp_path / "salt"))
    rows = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    assert {r["step"]: r["train/kd_weight"] for r in rows if r["step"] > 4 and "train/kd_weight" in r} == {5: 0, 6: 0}
