"""SuperEdit (Li et al., ICCV 2025; METHODS.md §28): InstructPix2Pix's noise-prediction loss plus a triplet margin
in noise-prediction space that makes the right instruction predict the noise better than a wrong one.

For each example the same noisy target z_t (step t, noise ε) and source image are read twice by the denoiser
(models/denoiser.py), with the instruction c+ and with one wrong instruction c- (a word swapped):
    d± = mean over pixels of ||ε_θ(z_t, t, source, c±) - ε||²
    L = mean d+  +  w · mean max(0, d+ - d- + m)
w = config.superedit.triplet_weight from step `triplet_start` on (the paper's code: 1.0 from step 2000 of 6k), m the
margin (5e-4 in the paper's script). InstructPix2Pix's conditioning dropout, drawn per example with p: the
instruction alone is dropped for u < p, both for p <= u < 2p, the source alone for 2p <= u < 3p (u uniform; the
text for u < 2p, the image for p <= u < 3p, as its training script has it). As in SuperEdit's code the examples
whose instruction is dropped stay in the triplet mean, where d+ = d- and each adds the constant m.
`stop_positive` stops the gradient through d+ in the triplet term (the code's option).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError
from losses.pacing import count_step
from models.diffusion import TIMESTEPS, add_noise


def noise_errors(params, batch, rng, *, model, dropout: float, negative: bool):
    """(d+ [B], d- [B] or None, the dropped instructions bool [B]) for the batch's "target" (the edited image) and
    "image" (the source), both normalised, "text" and (`negative`) "negative" tokens."""
    x0, source = batch["target"], batch["image"]
    b = x0.shape[0]
    t_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
    t = jax.random.randint(t_rng, (b,), 0, TIMESTEPS)
    noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
    z = add_noise(x0, noise, t)
    u = jax.random.uniform(drop_rng, (b,))
    text_dropped = u < 2 * dropout
    image_kept = ~((u >= dropout) & (u < 3 * dropout))
    source = source * image_kept[:, None, None, None]

    def error(tokens):
        eps = model.apply({"params": params}, z, source, t, tokens, text_dropped)
        return jnp.mean(jnp.square(eps.astype(jnp.float32) - noise), axis=(1, 2, 3))

    return error(batch["text"]), error(batch["negative"]) if negative else None, text_dropped


def triplet_weight(step: jax.Array, config: ml_collections.ConfigDict) -> jax.Array:
    """w once `step` (optimizer steps taken) reaches config.superedit.triplet_start, else 0."""
    c = config.superedit
    return jnp.where(step >= c.triplet_start, c.triplet_weight, 0.0)


def superedit_loss(params, batch, extra, rng, *, model, config):
    c = config.superedit
    negative = c.triplet_weight > 0
    d_pos, d_neg, dropped = noise_errors(params, batch, rng, model=model, dropout=c.conditioning_dropout,
                                         negative=negative)  # fmt: skip
    mse = jnp.mean(d_pos)
    metrics = {"noise_mse": mse, "instruction_dropped": jnp.mean(dropped.astype(jnp.float32))}
    if not negative:  # plain InstructPix2Pix: no second pass
        return mse, metrics
    anchor = jax.lax.stop_gradient(d_pos) if c.stop_positive else d_pos
    hinge = jnp.maximum(anchor - d_neg + c.margin, 0.0)
    weight = triplet_weight(extra["step"], config)
    metrics.update(
        triplet=jnp.mean(hinge), triplet_weight=weight, noise_mse_wrong=jnp.mean(d_neg),
        wrong_minus_right=jnp.mean(d_neg - d_pos), triplet_active=jnp.mean((hinge > 0).astype(jnp.float32)),
    )  # fmt: skip
    return mse + weight * jnp.mean(hinge), metrics


def init_extra(params, config, inputs=None) -> dict:
    """The optimizer steps taken, for the triplet's start."""
    del params, config, inputs
    return {"step": jnp.zeros((), jnp.int32)}


def batch_fields(record: dict, rng, encode) -> dict:
    """The edited image ("target", uint8 like "image") and one of the record's wrong instructions, drawn afresh."""
    wrong = record["hard_negatives"]
    return {"target": record["target"], "negative": encode([wrong[int(rng.integers(len(wrong)))]])[0]}


def validate(config: ml_collections.ConfigDict) -> None:
    c = config.superedit
    if not 0 <= c.conditioning_dropout <= 1 / 3:
        raise ConfigError(
            f"config.superedit.conditioning_dropout ({c.conditioning_dropout}) is each of three shares of the batch "
            "(instruction, both, source dropped); set it in [0, 1/3]."
        )
    if c.triplet_weight < 0 or c.margin < 0 or c.triplet_start < 0:
        raise ConfigError(
            "config.superedit.triplet_weight, margin and triplet_start must be >= 0 (triplet_weight 0 is plain "
            "InstructPix2Pix); fix the negative one."
        )
    if config.data.image_size % 2:
        raise ConfigError(
            f"The denoiser halves the image once, and config.data.image_size is {config.data.image_size}; make it even."
        )


update_extra = count_step


def no_batch_term(config) -> str:
    return "SuperEdit's loss is per example (noise errors), with no term over the batch to tile or ring"
