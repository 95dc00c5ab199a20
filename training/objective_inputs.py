"""What an objective needs beyond the batch that its pure loss module cannot make: host arrays the trainer
reads before anything is jitted and passes to `Objective.init_extra(params, config, inputs)`.

- uclip: `concepts`, the frozen multilingual encoder's table [V, embed_dim]; the memory banks' inputs,
  from the training data: `bank_images`, N normalised images [N, S, S, 3], and `bank_words`, the word ids
  [N, W] of the second-language translations of N other captions (N = uclip.bank_size): on the embedded
  data the shapes validation split's examples 0..N-1 and N..2N-1 (as before this module, so measured
  results stand), on your files the first 2N usable examples of config.data. Its batch field
  `caption_words` is the input pipeline's too (`batch_fields`).
- proclip: `embedder`, the text path of proclip.embedder_workdir's latest checkpoint; none when that is
  '' (losses/proclip.py then initialises a fresh embedder from proclip.embedder_seed under jit).
- denseclip: `class_tokens`, the tokens of config.denseclip.class_names (the run's tokenizer). Its batch field
  `segmentation`, each pixel's class, is the input pipeline's (input_pipeline/segmentation.py; on your files the
  masks beside the images, input_pipeline/masks.py).
- salt: `teacher`, the small language model's params from salt.teacher_workdir's latest checkpoint.
- climb: `piece_rank`, each piece's rank by the tokenizer's probability (the vocabulary curriculum's).
- pcp: `verbalizer`, the pieces of the label words (input_pipeline/acceptability_text.py VERBALIZER) in the run's
  tokenizer.

`input_shapes` gives the same as ShapeDtypeStructs without reading anything (restoring a checkpoint needs
only the state's shapes).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs.errors import ConfigError
from input_pipeline import acceptability_text, second_language, segmentation, shapes, transforms
from input_pipeline.curriculum import piece_ranks
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.sources import open_raw_source, usable_examples
from losses import proclip, salt
from losses.objectives import get_objective
from training.checkpointing import init_params_from

# Per-example inputs whose making needs the input pipeline (losses/ cannot import it): config -> batch_fields.
BATCH_FIELDS = {
    "uclip": lambda config: second_language.caption_word_fields,
    "denseclip": lambda config: segmentation.segmentation_fields(
        tuple(config.denseclip.class_names), shapes_data=config.data.name == "shapes"
    ),
}


def batch_fields(config: ml_collections.ConfigDict) -> Callable[..., dict] | None:
    """The batch_fields of config.objective (Objective.batch_fields, or the pipeline-made ones above)."""
    name = config.objective
    return BATCH_FIELDS[name](config) if name in BATCH_FIELDS else get_objective(name).batch_fields


def _uclip_shapes(config: ml_collections.ConfigDict, params) -> dict:
    del params
    n, side = config.uclip.bank_size, config.data.image_size
    return {
        "concepts": jax.ShapeDtypeStruct((len(second_language.encoder_words()), config.model.embed_dim), np.float32),
        "bank_images": jax.ShapeDtypeStruct((n, side, side, 3), np.float32),
        "bank_words": jax.ShapeDtypeStruct((n, second_language.MAX_WORDS), np.int32),
    }


def _uclip_inputs(config: ml_collections.ConfigDict, params, tokenizer) -> dict:
    del params, tokenizer
    n, data = config.uclip.bank_size, config.data
    if data.name == "shapes":
        source = shapes.ShapesSource("validation", 2 * n, seed=0, image_size=data.image_size, cache_dir=data.cache_dir)
    else:
        source = DecodedSource(open_raw_source(data), data.image_size)
    examples = usable_examples(source, 2 * n)
    if len(examples) < 2 * n:
        raise ConfigError(
            f"config.uclip.bank_size={n} needs {2 * n} usable examples (an image bank and an unpaired caption bank) "
            f"but the training data holds {len(examples)}; lower config.uclip.bank_size."
        )
    captions = [second_language.translate(r["caption"]) for r in examples[n:]]
    return {
        "concepts": second_language.concept_table(config.model.embed_dim, config.uclip.mismatch),
        "bank_images": transforms.normalize_image(np.stack([r["image"] for r in examples[:n]])),
        "bank_words": second_language.word_ids(captions, second_language.MAX_WORDS),
    }


def _proclip_shapes(config: ml_collections.ConfigDict, params) -> dict:
    if not config.proclip.embedder_workdir:
        return {}
    shape = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)  # noqa: E731
    return {"embedder": {k: jax.tree.map(shape, params[k]) for k in proclip.EMBEDDER_PREFIXES}}


def _proclip_inputs(config: ml_collections.ConfigDict, params, tokenizer) -> dict:
    del tokenizer
    if not config.proclip.embedder_workdir:
        return {}
    template = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), params)
    workdir = config.proclip.embedder_workdir
    loaded = init_params_from(workdir, template, proclip.EMBEDDER_PREFIXES, "config.proclip.embedder_workdir")[0]
    return {"embedder": {k: jax.tree.map(np.asarray, loaded[k]) for k in proclip.EMBEDDER_PREFIXES}}


def _denseclip_inputs(config: ml_collections.ConfigDict, params, tokenizer) -> dict:
    del params
    if tokenizer is None:
        raise ValueError("DenseCLIP's inputs are its class names' tokens: pass the run's tokenizer to prepare_inputs.")
    d = config.denseclip
    tokens = segmentation.class_name_tokens(tokenizer, d.class_names, config.model.text.max_len, d.context_tokens)
    return {"class_tokens": tokens}


def _denseclip_shapes(config: ml_collections.ConfigDict, params) -> dict:
    del params
    d = config.denseclip
    return {"class_tokens": jax.ShapeDtypeStruct((len(d.class_names), config.model.text.max_len - d.context_tokens),
                                                 np.int32)}  # fmt: skip


def _salt_shapes(config: ml_collections.ConfigDict, params) -> dict:
    """The small model's params as ShapeDtypeStructs; its vocabulary is the trained model's (one tokenizer)."""
    vocab_size = params["token_embedding"]["embedding"].shape[0]
    tokens = jnp.zeros((1, config.salt.teacher.max_len), jnp.int32)
    teacher = salt.teacher_model(config, vocab_size)
    return {"teacher": jax.eval_shape(lambda: teacher.init(jax.random.PRNGKey(0), tokens)["params"])}


def _salt_inputs(config: ml_collections.ConfigDict, params, tokenizer) -> dict:
    del tokenizer
    abstract = _salt_shapes(config, params)["teacher"]
    template = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract)
    workdir = config.salt.teacher_workdir
    loaded, _, _ = init_params_from(workdir, template, sorted(template), "config.salt.teacher_workdir")
    return {"teacher": jax.tree.map(np.asarray, loaded)}


def _climb_shapes(config: ml_collections.ConfigDict, params) -> dict:
    """Each piece's rank [vocab]: the token embedding's rows less the [MASK] row."""
    del config
    return {"piece_rank": jax.ShapeDtypeStruct((params["text_tower"]["token_embedding"]["embedding"].shape[0] - 1,),
                                               np.int32)}  # fmt: skip


def _climb_inputs(config: ml_collections.ConfigDict, params, tokenizer) -> dict:
    if tokenizer is None:
        raise ValueError("CLIMB's vocabulary curriculum ranks the run's pieces: pass its tokenizer to prepare_inputs.")
    del config, params
    return {"piece_rank": piece_ranks(tokenizer)}


def _pcp_inputs(config: ml_collections.ConfigDict, params, tokenizer) -> dict:
    if tokenizer is None:
        raise ValueError("PCP's prompt reads the label words' pieces: pass the run's tokenizer to prepare_inputs.")
    del config, params
    try:
        return {"verbalizer": acceptability_text.verbalizer_ids(tokenizer)}
    except ValueError as e:
        raise ConfigError(str(e)) from None


# objective -> (inputs: (config, params of the model or their ShapeDtypeStructs, tokenizer) -> dict, their shapes:
# (config, params) -> dict).
PREPARERS = {
    "uclip": (_uclip_inputs, _uclip_shapes),
    "proclip": (_proclip_inputs, _proclip_shapes),
    "denseclip": (_denseclip_inputs, _denseclip_shapes),
    "salt": (_salt_inputs, _salt_shapes),
    "climb": (_climb_inputs, _climb_shapes),
    "pcp": (
        _pcp_inputs,
        lambda config, params: {"verbalizer": jax.ShapeDtypeStruct((len(acceptability_text.VERBALIZER),), np.int32)},
    ),
}


def prepare_inputs(config: ml_collections.ConfigDict, params, tokenizer=None) -> dict:
    """config.objective's inputs as host arrays ({} for objectives that need none); reads files and data, and
    tokenizes with the run's `tokenizer` (DenseCLIP's class names)."""
    make, _ = PREPARERS.get(config.objective, (None, None))
    return make(config, params, tokenizer) if make else {}


def input_shapes(config: ml_collections.ConfigDict, params) -> dict:
    """prepare_inputs' ShapeDtypeStructs, reading nothing."""
    _, shapes_of = PREPARERS.get(config.objective, (None, None))
    return shapes_of(config, params) if shapes_of else {}
