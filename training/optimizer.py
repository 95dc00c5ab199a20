"""AdamW with linear warmup + cosine decay, gradient clipping and a weight-decay mask."""

from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    o = config.optimizer
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=o.learning_rate,
        warmup_steps=o.warmup_steps,
        decay_steps=max(config.total_steps, o.warmup_steps + 1),
        end_value=o.learning_rate * o.end_learning_rate_factor,
    )


def weight_decay_mask(params) -> dict:
    """Decay matrices and embeddings only: not biases, norm scales or the temperature (scalars, vectors)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def frozen_labels(params, prefixes: tuple[str, ...]) -> dict:
    """ "frozen" for every parameter whose path ("text_tower/block0/...") starts with one of `prefixes`, else "trained".

    A prefix matches whole path components; one that matches no parameter raises ValueError.
    """
    paths = {
        leaf_path: "/".join(str(getattr(k, "key", k)) for k in leaf_path)
        for leaf_path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    for prefix in prefixes:
        if not any(name == prefix or name.startswith(prefix + "/") for name in paths.values()):
            top = sorted({name.split("/")[0] for name in paths.values()})
            raise ValueError(
                f"config.optimizer.frozen_prefixes names {prefix!r}, which matches no parameter; use one of {top}."
            )
    frozen = lambda name: any(name == p or name.startswith(p + "/") for p in prefixes)  # noqa: E731
    return jax.tree_util.tree_map_with_path(lambda path, _: "frozen" if frozen(paths[path]) else "trained", params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW on every parameter except those under config.optimizer.frozen_prefixes, which never change (LiT)."""
    o = config.optimizer
    frozen = tuple(o.get("frozen_prefixes", ()))
    if frozen:
        return optax.multi_transform(
            {"trained": _adamw(config), "frozen": optax.set_to_zero()},
            lambda params: frozen_labels(params, frozen),
        )
    return _adamw(config)


def _adamw(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    o = config.optimizer
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip_norm),
        optax.adamw(
            learning_rate_schedule(config),
            b1=o.b1,
            b2=o.b2,
            eps=o.eps,
            weight_decay=o.weight_decay,
            mask=weight_decay_mask,
        ),
    )
