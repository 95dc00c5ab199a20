"""LiMBeR's and CLOSE's training data and starting point (config.model.kind 'captioner', models/captioner.py).

Data: the captions of config.data's training images, each with the frozen CLIP run's (config.init_from.workdir)
unit-norm embedding of the image (limber) or of the caption itself (close: text only), computed once on the host
before anything is jitted; records {"text", "prefix_features" float32 [D]}. Captions: on the embedded shapes
data each image's scene sentence ("there is a large yellow cross in the center ."), in the style of the language
model's corpus (shapes.scene_sentences); on your files each example's caption.

Start: the captioner's "lm" params come from the language-model run config.<objective>.lm_workdir (its
tokenizer reads the captions); the prefix map starts random.
"""

from __future__ import annotations

import collections

import jax
import ml_collections
import numpy as np
from absl import logging

from configs.common import REAL_DATASETS
from configs.errors import ConfigError
from input_pipeline import shapes
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.sources import open_raw_source, usable_examples
from input_pipeline.text_transform import TextTransform
from input_pipeline.tokenizer import Tokenizer
from losses.captioning import CAPTION_OBJECTIVES
from models.mend import distiller_from_language_model
from training.checkpointing import init_params_from
from training.trained_runs import check_language_model_run, frozen_encoders, run_config


def is_captioner(config: ml_collections.ConfigDict) -> bool:
    return config.model.kind == "captioner"


def reads_language_model(config: ml_collections.ConfigDict) -> bool:
    """The model holds a trained language model's params under "lm", read from config.<objective>.lm_workdir with
    its tokenizer: a captioner's, or MEND's (models/mend.py)."""
    return is_captioner(config) or config.model.kind == "mend"


def lm_workdir(config: ml_collections.ConfigDict) -> str:
    return config[config.objective].lm_workdir


def image_caption_pairs(config: ml_collections.ConfigDict, split: str, count: int) -> tuple[np.ndarray, list[str]]:
    """(uint8 images [N, S, S, 3] at the CLIP run's image size, their captions) of the first `count` usable
    examples: of the shapes `split` on the embedded data, else of config.data's files (training only)."""
    size = run_config(config.init_from.workdir).data.image_size
    if config.data.name == "shapes":
        records = list(shapes.ShapesSource(split, count, seed=0, image_size=size, cache_dir=config.data.cache_dir))
        return np.stack([r["image"] for r in records]), [shapes.scene_sentences(r) for r in records]
    skipped = collections.Counter()
    records = usable_examples(DecodedSource(open_raw_source(config.data), size), count, skipped)
    if skipped:
        logging.warning("Skipped %d examples of config.data.path: %s", sum(skipped.values()), dict(skipped))
    if len(records) < config.batch_size:
        raise ConfigError(
            f"config.data.path holds {len(records)} usable image-caption examples, fewer than a batch "
            f"({config.batch_size}); add examples or lower config.batch_size."
        )
    return np.stack([r["image"] for r in records]), [r["caption"] for r in records]


def make_source(config: ml_collections.ConfigDict) -> list[dict]:
    """The training records {"text": caption, "prefix_features": the CLIP embedding [D]}."""
    images, captions = image_caption_pairs(config, "train", config.data.train_size)
    encoders, _, step = frozen_encoders(config.init_from.workdir)
    if config.objective == "limber":
        features = encoders.images(images)[1]
    else:  # close: the text embeddings of the captions; no image is read by the loss
        features = encoders.texts(captions)
    logging.info(
        "%s: %d captions with the %s embeddings of the CLIP run %s (step %d)",
        config.objective, len(captions), "image" if config.objective == "limber" else "caption",
        config.init_from.workdir, step,
    )  # fmt: skip
    return [{"text": c, "prefix_features": f.astype(np.float32)} for c, f in zip(captions, features, strict=True)]


def make_transform(config: ml_collections.ConfigDict, tokenizer: Tokenizer) -> TextTransform:
    """Caption tokens that leave the prefix room in the LM's context (it reads tokens[:-1])."""
    return TextTransform(tokenizer, config.model.decoder.max_len + 1 - config[config.objective].prefix_tokens)


def with_language_model(config: ml_collections.ConfigDict, state):
    """`state` with the "lm" params (a captioner's, or MEND's: models/mend.py) read from the language-model run
    config.<objective>.lm_workdir."""
    key = f"config.{config.objective}.lm_workdir"
    lm, copied, step = init_params_from(lm_workdir(config), state.params["lm"], sorted(state.params["lm"]), key)
    logging.info("Loaded the language model (%d arrays) of %s at step %d", len(copied), lm_workdir(config), step)
    return state.replace(params={**state.params, "lm": lm})


def with_distiller_from_language_model(config: ml_collections.ConfigDict, state):
    """MEND's `state` (its "lm" loaded) with the distiller a copy of the language model (models/mend.py), each array
    placed as the distiller's was."""
    params = distiller_from_language_model(state.params, config.mend.virtual_tokens, config.seed)
    placed = jax.tree.map(lambda new, old: jax.device_put(new, old.sharding), params["distiller"],
                          state.params["distiller"])  # fmt: skip
    logging.info("Started the distiller as a copy of the language model (config.mend.distiller_init='lm')")
    return state.replace(params={**state.params, "distiller": placed})


def check_captioner(c: ml_collections.ConfigDict) -> None:
    """A captioner names a trained CLIP run and a trained language model whose sizes match the config's; one
    sentence naming the fix otherwise. Reads the runs' run_info.json only (no jax)."""
    if (c.objective in CAPTION_OBJECTIVES) != is_captioner(c):
        raise ConfigError(
            f"config.objective={c.objective!r} "
            + (f"trains a captioner; set config.model.kind='captioner' (configs/{c.objective}.py)."
               if c.objective in CAPTION_OBJECTIVES else
               f"does not train a captioner; use one of {list(CAPTION_OBJECTIVES)} or another config.model.kind.")
        )  # fmt: skip
    if not is_captioner(c):
        return
    name = c.objective
    if c.data.name not in ("shapes", *REAL_DATASETS):
        raise ConfigError(
            f"{name} captions images, not config.data.name={c.data.name!r}; use 'shapes' or your image-text files."
        )
    if not c.init_from.workdir or c.init_from.pretrained:
        raise ConfigError(
            f"{name} reads a frozen CLIP run's embeddings; set config.init_from.workdir to a configs/clip.py run's "
            "--workdir (and config.init_from.pretrained to '')."
        )
    clip = run_config(c.init_from.workdir)
    if clip.model.get("kind", "two_tower") != "two_tower":
        raise ConfigError(f"config.init_from.workdir {c.init_from.workdir!r} is no CLIP run; name a two-tower run.")
    if clip.model.embed_dim != c.model.embed_dim:
        raise ConfigError(
            f"The CLIP run in {c.init_from.workdir!r} embeds in {clip.model.embed_dim} dimensions but "
            f"config.model.embed_dim is {c.model.embed_dim}; set --config.model.embed_dim={clip.model.embed_dim}."
        )
    if not lm_workdir(c):
        raise ConfigError(
            f"{name} captions with a trained language model; set config.{name}.lm_workdir to a configs/lm.py run's "
            "--workdir."
        )
    check_language_model_run(
        lm_workdir(c), c.model.decoder, key=f"config.{name}.lm_workdir", sizes_key="config.model.decoder",
        what="the language model", trained_by="configs/lm.py",
    )  # fmt: skip
    room = c.model.decoder.max_len - c[name].prefix_tokens - c.generation.max_new_tokens
    if room < 1:
        raise ConfigError(
            f"config.{name}.prefix_tokens ({c[name].prefix_tokens}) and config.generation.max_new_tokens "
            f"({c.generation.max_new_tokens}) leave no room for BOS in the context of {c.model.decoder.max_len}; "
            "lower one of them."
        )
