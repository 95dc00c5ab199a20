"""COCONUT (Cappellazzo et al. 2024, METHODS.md §21): class-incremental learning with experience replay and two
contrastive terms, on the embedded shapes images in place of spoken commands (an image stands for the audio, its
caption for the transcript, its shape for the intent).

Each experience is a run (configs/coconut.py:task=k) started from the run of the experience before, which is also
the frozen teacher. Its batch holds the experience's examples and rehearsal samples of the earlier classes
(input_pipeline/class_incremental.py: `class_label`, `replay`). The loss is

    L = CE + nspt_weight L_NSPT + mm_weight L_MM

- CE: cross-entropy of a linear classifier over the image features (the paper's seq2seq decoder writes the intent;
  ours is the usual class-incremental head), its logits of the classes not yet seen masked out. (Scoring the
  classes' names through the text tower instead does not learn from scratch: at initialisation the tiny towers
  embed every image and every name alike, and the cross-entropy settles at the class prior, 0.693 for two.)
- L_NSPT (negative-student, positive-teacher SupCon), over the rehearsal samples only: for anchor i, student
  embedding s_i, positives the teacher's embeddings t_p of the rehearsal samples of i's class (i's own included),
  negatives the student's embeddings s_n of those of other classes:
      l_i = -1/|P(i)| sum_p log[exp(s_i.t_p/tau) / Z_i],
      Z_i = sum_{p' in P(i)} exp(s_i.t_p'/tau) + sum_{n in N(i)} exp(s_i.s_n/tau)
  (METHODS.md's reconstruction; the mask mixes two sources of columns per anchor, so it is a dense term of its own
  over the batch, not the shared primitive's.)
- L_MM: supervised contrastive alignment of the new data's image and caption embeddings, positives every pair of
  the same class across the modalities (the shared primitive with `positive_group`, both directions), at the same
  temperature tau.
Embeddings are the model's normalised image / text embeddings.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options

_MASKED = -1e9  # a finite "excluded" logit: rows with nothing kept still give finite gradients


def nspt_loss(
    student: jax.Array, teacher: jax.Array, labels: jax.Array, replay: jax.Array, temperature: float
) -> jax.Array:
    """student, teacher [B, D] normalised embeddings, labels [B] int, replay [B] bool -> the mean over rehearsal
    anchors of l_i (module docstring); 0 when the batch holds no rehearsal sample."""
    teacher = jax.lax.stop_gradient(teacher)
    to_teacher = student @ teacher.T / temperature
    to_student = student @ student.T / temperature
    both = replay[:, None] & replay[None, :]
    same = labels[:, None] == labels[None, :]
    positive, negative = both & same, both & ~same
    logits = jnp.where(positive, to_teacher, jnp.where(negative, to_student, _MASKED))
    log_z = jax.nn.logsumexp(logits, axis=1, keepdims=True)
    count = jnp.maximum(jnp.sum(positive, axis=1), 1)
    per_anchor = -jnp.sum(jnp.where(positive, to_teacher - log_z, 0.0), axis=1) / count
    return jnp.sum(jnp.where(replay, per_anchor, 0.0)) / jnp.maximum(jnp.sum(replay), 1)


def seen_mask(config: ml_collections.ConfigDict) -> np.ndarray:
    """bool [C]: the classes of experiences 0..config.coconut.task, C = config.model.image_classes (the label's)."""
    c, classes = config.coconut, config.model.image_classes
    return np.arange(classes) < (c.task + 1) * (classes // c.tasks)


def seen_logits(class_logits: jax.Array, seen: np.ndarray) -> jax.Array:
    """class_logits [B, C] -> the same with the classes not yet seen (seen [C] False) at _MASKED."""
    return jnp.where(jnp.asarray(seen), class_logits, _MASKED)


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per example: `image_embedding`, `text_embedding` [B, D], `class_logits` [B, C] and, with a teacher,
    `teacher_embedding` [B, D] (the frozen previous model's image embedding)."""
    del rng, config
    out = model.apply({"params": params}, batch["image"], batch["text"])
    embeddings = {k: out[k] for k in ("image_embedding", "text_embedding", "class_logits")}
    if "teacher" in extra:
        teacher = model.apply({"params": extra["teacher"]}, batch["image"])["image_embedding"]
        embeddings["teacher_embedding"] = jax.lax.stop_gradient(teacher)
    return embeddings


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """CE + nspt_weight L_NSPT + mm_weight L_MM (module docstring) over the whole batch's embeddings; metrics: each
    term, the classifier's accuracy on the batch, and the share of rehearsal samples in it."""
    del params, extra, rng, model
    c = config.coconut
    labels, replay = jnp.asarray(batch["class_label"]), jnp.asarray(batch["replay"]).astype(bool)
    image = embeddings["image_embedding"]
    logits = seen_logits(embeddings["class_logits"], seen_mask(config))
    log_p = jax.nn.log_softmax(logits, axis=-1)
    ce = -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=1))
    metrics = {"ce": ce, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels), "replay_fraction": jnp.mean(replay)}
    total = ce
    if c.nspt_weight and "teacher_embedding" in embeddings:
        metrics["nspt"] = nspt_loss(image, embeddings["teacher_embedding"], labels, replay, c.temperature)
        total = total + c.nspt_weight * metrics["nspt"]
    if c.mm_weight:
        metrics["mm"], _ = contrastive_loss(
            image, embeddings["text_embedding"], jnp.log(1.0 / c.temperature),
            valid=~replay, positive_group=labels, **implementation_options(config),
        )  # fmt: skip
        total = total + c.mm_weight * metrics["mm"]
    return total, metrics


def init_extra(params, config, inputs=None) -> dict:
    """After the first experience with NSPT on, {"teacher": a frozen copy of the params the run starts from} (the
    previous experience's model, copied in by config.init_from.workdir); else {}."""
    del inputs
    return {"teacher": jax.tree.map(jnp.copy, params)} if uses_teacher(config) else {}


def uses_teacher(config: ml_collections.ConfigDict) -> bool:
    return config.coconut.task > 0 and config.coconut.nspt_weight > 0


def batch_fields(record, rng, encode) -> dict:
    """The class and whether the example is a rehearsal sample (input_pipeline/class_incremental.py)."""
    del rng, encode
    return {"class_label": np.int32(record["class_label"]), "replay": np.bool_(record["replay"])}


def validate(config: ml_collections.ConfigDict) -> None:
    c = config.coconut
    if c.label not in ("shape", "colour"):
        raise ConfigError(f"config.coconut.label={c.label!r} is no class label of the shapes; use 'shape' or 'colour'.")
    classes = config.model.image_classes  # the label's, checked by training/method_validation.py
    if c.tasks < 1 or (classes and classes % c.tasks):
        divisors = [n for n in range(1, classes + 1) if classes % n == 0]
        raise ConfigError(
            f"config.coconut.tasks={c.tasks} does not split the {classes} classes evenly; use one of {divisors}."
        )
    if not 0 <= c.task < c.tasks:
        raise ConfigError(f"config.coconut.task={c.task} is not an experience of {c.tasks}; use 0 to {c.tasks - 1}.")
    if c.task > 0 and not config.init_from.workdir:
        raise ConfigError(
            f"Experience {c.task} starts from the run of experience {c.task - 1}; set config.init_from.workdir to it."
        )
    if c.buffer_per_class < 0:
        raise ConfigError(f"config.coconut.buffer_per_class={c.buffer_per_class} is negative; use 0 or more.")
    if not 0.0 <= c.replay_fraction < 1.0:
        raise ConfigError(
            f"config.coconut.replay_fraction={c.replay_fraction} is outside [0, 1); 0 joins the buffer once."
        )
    for key in ("nspt_weight", "mm_weight"):
        if c[key] < 0:
            raise ConfigError(f"config.coconut.{key}={c[key]} is negative; use 0 (off) or more.")
    if c.temperature <= 0:
        raise ConfigError(f"config.coconut.temperature={c.temperature} must be positive (SupCon's is 0.1).")
    if config.data.name != "shapes":
        raise ConfigError(
            f"COCONUT's experiences split the embedded shapes' classes, not config.data.name={config.data.name!r}; "
            "set config.data.name='shapes'."
        )
