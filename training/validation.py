"""Config and workdir checks that run before anything compiles: one clear sentence per problem.

Table-driven: every key's type is checked against the base config's default (configs/common.py),
named choices against the dicts the code looks them up in, value ranges against RANGES, then a few
rules that tie keys together. A method's own section, config.<objective>, and what its objective reads are
training/method_validation.py's to check; config.evals, evaluation/eval_types.py's.
Divisibility by the device and process counts needs jax's backend, so the loop checks it right after
making the mesh (`validate_batch_division`).
"""

from __future__ import annotations

import math
import os

import ml_collections

from configs.common import DATASETS, VIDEO_DATASETS, check_type, flat_items, get_base_config
from configs.errors import ConfigError
from evaluation.eval_types import validate_evals
from input_pipeline import shape_video
from input_pipeline.acceptability_text import ACCEPTABILITY_DATASET
from input_pipeline.child_text import CHILD_DATASET
from input_pipeline.icl_tasks import ICL_DATASET
from input_pipeline.pipeline import TEXT_AUGMENTATIONS
from input_pipeline.preference_text import PHF_DATASETS
from input_pipeline.quality_text import QUALITY_DATASETS
from input_pipeline.shape_edits import EDIT_DATASET
from input_pipeline.text_sources import TEXT_DATASETS
from input_pipeline.tokenizer import TOKENIZERS
from losses.captioning import CAPTION_OBJECTIVES
from losses.contrastive import ALL_IMPLEMENTATIONS, FUSED, LOW_PRECISION_IMPLEMENTATIONS, MATMUL_DTYPES
from losses.language import LANGUAGE_OBJECTIVES
from losses.objectives import OBJECTIVES, check_objective_options
from models.generation import STRATEGIES
from models.language_model import MLPS, NORMS, POSITIONS
from models.text_towers import TEXT_POOLING, TEXT_TOWERS
from models.transformer import ACTIVATIONS, ATTENTION
from models.two_tower import PROJECTIONS
from models.vit import IMAGE_POOLING
from training.caption_task import check_captioner
from training.method_validation import check_method_options

# key -> (what the value names, valid choices).
CHOICES: dict[str, tuple[str, list[str]]] = {
    "objective": ("objective", sorted(OBJECTIVES)),
    "data.name": ("dataset", list(DATASETS)),
    "data.text_augmentation": ("text augmentation", list(TEXT_AUGMENTATIONS)),
    "loss.implementation": ("loss implementation", list(ALL_IMPLEMENTATIONS)),
    "loss.matmul_dtype": ("loss matmul dtype", list(MATMUL_DTYPES)),
    "model.dtype": ("compute dtype", ["float32", "bfloat16"]),
    "model.layer_norm_dtype": ("LayerNorm dtype", ["float32", "bfloat16"]),
    "model.attention": ("attention kernel", list(ATTENTION)),
    "model.image.pool": ("image pooling", list(IMAGE_POOLING)),
    "model.image_projection": ("projection", list(PROJECTIONS)),
    "model.text_projection": ("projection", list(PROJECTIONS)),
    "model.image.activation": ("activation", list(ACTIVATIONS)),
    "model.text.activation": ("activation", list(ACTIVATIONS)),
    "model.text.kind": ("text tower", list(TEXT_TOWERS)),
    "text.tokenizer": ("tokenizer", list(TOKENIZERS)),
    "model.text_mlp_head": ("text MLP head setting", ["none", "train", "always"]),
    "distributed.initialize": ("distributed setting", ["auto", "on", "off"]),
    "model.kind": ("model kind", ["two_tower", "decoder", "captioner", "mend", "denoiser"]),
    "generation.strategy": ("decoding strategy", list(STRATEGIES)),
    "model.decoder.norm": ("decoder norm", list(NORMS)),
    "model.decoder.position": ("decoder position encoding", list(POSITIONS)),
    "model.decoder.mlp": ("decoder MLP", list(MLPS)),
}

_POSITIVE = (lambda v: v > 0, "must be positive")
_NON_NEGATIVE = (lambda v: v >= 0, "must be >= 0")
_BETA = (lambda v: 0 <= v < 1, "must be in [0, 1)")
_FRACTION = (lambda v: 0 <= v <= 1, "must be in [0, 1]")
_CROP = (lambda v: len(v) == 2 and 0 < v[0] <= v[1] <= 1, "must be (low, high) with 0 < low <= high <= 1")
# key -> (predicate, what it requires). Keys absent here take any value of the right type.
RANGES = {
    **dict.fromkeys(
        (
            "total_steps", "batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
            "keep_checkpoints", "max_consecutive_skipped_steps", "data.train_size", "data.image_size",
            "text.vocab_size", "model.image.width", "model.image.depth", "model.image.heads",
            "model.image.patch_size", "model.text.width", "model.text.depth", "model.text.heads",
            "model.text.max_len", "model.embed_dim", "optimizer.learning_rate",
            "optimizer.eps", "optimizer.grad_clip_norm", "eval.num_examples", "eval.batch_size",
            "microbatches", "dry_run.devices", "dry_run.device_memory_gib", "model.decoder.width",
            "model.decoder.depth", "model.decoder.heads", "model.decoder.max_len", "generation.max_new_tokens",
            "model.decoder.norm_eps", "model.decoder.rope_theta",
            "generation.top_k", "generation.temperature", "generation.beams",
        ),
        _POSITIVE,
    ),
    **dict.fromkeys(
        (
            "data.worker_count",
            "loss.tile_size",
            "data.rewrite_warmup_steps",
            "model.image.conv_stem_depth",
            "model.image.mlp_dim",
            "model.text.mlp_dim",
            "model.decoder.mlp_dim",
            "model.decoder.kv_heads",
            "model.decoder.vocab_size",
            "generation.min_new_tokens",
            "model.video_frames",
            "model.text.eos_token_id",
            "optimizer.warmup_steps",
            "optimizer.weight_decay",
        ),
        _NON_NEGATIVE,
    ),
    "optimizer.b1": _BETA,
    "optimizer.b2": _BETA,
    "optimizer.end_learning_rate_factor": _FRACTION,
    "generation.alpha": _FRACTION,
    "generation.top_p": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "model.text.dropout_rate": _BETA,
    "data.context_window": _POSITIVE,
    "data.crop_scale": _CROP,
    **dict.fromkeys(("mesh.data", "mesh.fsdp", "mesh.model"), (lambda v: v == -1 or v > 0, "must be positive or -1")),
    "mesh.min_shard_size": _NON_NEGATIVE,
    "distributed.num_processes": _NON_NEGATIVE,
    "distributed.process_id": (lambda v: v >= -1, "must be >= 0, or -1 for the environment's"),
}  # fmt: skip


def _check_types(flat: dict, base: dict) -> None:
    for key, value in flat.items():
        if key not in base:
            raise ConfigError(
                f"config.{key} is not a known config key; fix its spelling, or add it with a default to "
                "configs/common.py and a description to configs/reference.py."
            )
        check_type(key, value, base[key])


def _check_choices(flat: dict) -> None:
    for key, (what, choices) in CHOICES.items():
        if key in flat and flat[key] not in choices:
            raise ConfigError(f"Unknown {what} {flat[key]!r}; set config.{key} to one of {choices}.")


def _check_ranges(flat: dict) -> None:
    for key, (holds, requirement) in RANGES.items():
        if key in flat and not holds(flat[key]):
            raise ConfigError(f"config.{key} {requirement}, not {flat[key]!r}.")


# generated in-process: no data.path
EMBEDDED_DATASETS = (
    "shapes", "shape_sentences", "shape_documents", "shape_commands", "shapes_video", "lm_text", "preference_text",
    *QUALITY_DATASETS, CHILD_DATASET, ACCEPTABILITY_DATASET, ICL_DATASET, EDIT_DATASET,
)  # fmt: skip


def _check_language_model(c: ml_collections.ConfigDict) -> None:
    """A language objective trains the decoder on text; the decoder trains only under one; its context fits."""
    if c.objective in CAPTION_OBJECTIVES or c.model.kind == "captioner":
        return  # a captioner's language model: check_captioner
    if (c.objective == "mend") != (c.model.kind == "mend"):
        raise ConfigError(
            "MEND's objective trains MEND's model and no other: set config.objective and config.model.kind both to "
            "'mend' (configs/mend.py), or neither."
        )
    if c.model.kind == "mend":
        return  # its frozen language model: training/method_validation.py check_mend
    language, decoder = c.objective in LANGUAGE_OBJECTIVES, c.model.kind == "decoder"
    if language != decoder:
        raise ConfigError(
            f"config.objective={c.objective!r} trains "
            + ("a language model; set config.model.kind='decoder' (configs/lm.py)." if language else
               f"the two-tower model, not config.model.kind='decoder'; use one of {list(LANGUAGE_OBJECTIVES)} or "
               "set config.model.kind='two_tower'.")
        )  # fmt: skip
    d = c.model.decoder
    if d.width % d.heads:
        raise ConfigError(
            f"config.model.decoder.width ({d.width}) is not divisible by config.model.decoder.heads ({d.heads}); "
            "choose a head count that divides the width."
        )
    if decoder and c.model.attention == "pallas":
        raise ConfigError(
            "The decoder's kernels take each row's length, which config.model.attention='pallas' cannot; use 'xla' "
            "or 'cudnn' (or 'dense')."
        )
    if d.kv_heads and d.heads % d.kv_heads:
        raise ConfigError(
            f"config.model.decoder.kv_heads ({d.kv_heads}) does not divide config.model.decoder.heads ({d.heads}); "
            "choose a divisor of the heads, or 0 for one key-value head per head."
        )
    if d.position == "rope" and (d.width // d.heads) % 2:
        raise ConfigError(
            f"Rotary positions turn pairs of dimensions, and the decoder's heads are {d.width // d.heads} wide; "
            "choose config.model.decoder.heads so that width / heads is even."
        )
    if decoder and c.data.name not in ("lm_text", "sentences", ICL_DATASET, *PHF_DATASETS, *QUALITY_DATASETS):
        raise ConfigError(
            f"A language model trains on text, not config.data.name={c.data.name!r}; use 'lm_text' (embedded) or "
            "'sentences' (your .txt or .jsonl file in config.data.path), or for PHF 'preference_text' or "
            "'scored_documents', for 1.5-Pints 'expository_text' or 'web_text', or for MEND 'icl_tasks'."
        )
    if decoder and c.generation.max_new_tokens >= d.max_len:
        raise ConfigError(
            f"config.generation.max_new_tokens ({c.generation.max_new_tokens}) leaves no room for a prompt in the "
            f"model's context of config.model.decoder.max_len ({d.max_len}) tokens; lower it."
        )
    if decoder and c.generation.top_k > c.text.vocab_size:
        raise ConfigError(
            f"config.generation.top_k ({c.generation.top_k}) exceeds the vocabulary ({c.text.vocab_size}); lower it."
        )


def _check_relations(c: ml_collections.ConfigDict) -> None:
    if c.model.scan_layers and c.model.kind != "two_tower":
        raise ConfigError(
            f"config.model.scan_layers scans the two-tower model's towers, and config.model.kind is {c.model.kind!r}; "
            "set config.model.scan_layers=False."
        )
    editing = (c.objective == "superedit", c.model.kind == "denoiser", c.data.name == EDIT_DATASET)
    if any(editing) and not all(editing):
        raise ConfigError(
            "SuperEdit's objective trains the editing denoiser on the editing pairs, and nothing else trains or reads "
            "them: set config.objective='superedit', config.model.kind='denoiser' and config.data.name='shape_edits' "
            "together (configs/superedit.py), or none of them."
        )
    if c.data.name == EDIT_DATASET and c.data.text_augmentation != "none":
        raise ConfigError(
            "The editing pairs have one instruction each and no rewrites to sample; set "
            "config.data.text_augmentation='none'."
        )
    if c.data.name == EDIT_DATASET and tuple(c.data.crop_scale) != (1.0, 1.0):
        raise ConfigError(
            f"A random crop of the source alone would misalign it with its edited image; set "
            f"config.data.crop_scale=(1.0, 1.0), not {tuple(c.data.crop_scale)}."
        )
    _check_language_model(c)
    if c.loss.implementation == FUSED and c.loss.tile_size & (c.loss.tile_size - 1):
        raise ConfigError(
            f"config.loss.tile_size={c.loss.tile_size} is not a power of two, which the fused kernels' blocks "
            "must be; set it to one (e.g. 64) or to 0 for the default."
        )
    if c.loss.matmul_dtype != "float32" and c.loss.implementation not in LOW_PRECISION_IMPLEMENTATIONS:
        raise ConfigError(
            f"config.loss.matmul_dtype={c.loss.matmul_dtype!r} is not available with "
            f"config.loss.implementation={c.loss.implementation!r}; use one of {list(LOW_PRECISION_IMPLEMENTATIONS)}."
        )
    if c.data.name not in EMBEDDED_DATASETS and not (c.data.tfds_name if c.data.name == "tfds" else c.data.path):
        key = "tfds_name" if c.data.name == "tfds" else "path"
        raise ConfigError(
            f"config.data.name={c.data.name!r} needs config.data.{key}; set it to your training data (docs/data.md)."
        )
    if c.data.name in EMBEDDED_DATASETS and c.batch_size > c.data.train_size:
        raise ConfigError(
            f"config.batch_size ({c.batch_size}) exceeds config.data.train_size ({c.data.train_size}); "
            "lower the batch size or raise the dataset size."
        )
    if c.data.name == "shapes_video" and c.data.image_size < shape_video.MIN_IMAGE_SIZE:
        raise ConfigError(
            f"The shapes_video clips need config.data.image_size >= {shape_video.MIN_IMAGE_SIZE}, not "
            f"{c.data.image_size}."
        )
    if c.data.name in VIDEO_DATASETS and c.objective != "xclip":
        raise ConfigError(
            f"config.data.name={c.data.name!r} holds clips, which only the xclip objective trains on; set "
            "config.objective='xclip' (configs/xclip.py) or train on data.name='shapes'."
        )
    for tower in ("image", "text"):
        width, heads = c.model[tower].width, c.model[tower].heads
        if width % heads:
            raise ConfigError(
                f"config.model.{tower}.width ({width}) is not divisible by config.model.{tower}.heads ({heads}); "
                "choose a head count that divides the width."
            )
    for tower in ("image", "text"):
        if c.model[f"{tower}_projection"] == "none" and c.model.embed_dim != c.model[tower].width:
            raise ConfigError(
                f"config.model.{tower}_projection is 'none', so config.model.embed_dim ({c.model.embed_dim}) must be "
                f"config.model.{tower}.width ({c.model[tower].width}); set one to the other or use 'linear'."
            )
    image, patch, stem = c.data.image_size, c.model.image.patch_size, c.model.image.conv_stem_depth
    # Without a conv stem the patch convolution drops the pixels beyond the last whole patch, as CLIP's
    # and SigLIP's do (SigLIP So400m/14 runs at 384 px); a stem's stride-2 convolutions need the multiple.
    vit = c.model.kind != "denoiser"  # SuperEdit's denoiser convolves the pixels: no image tower, no patches
    if vit and ((stem and image % patch) or patch % 2**stem or image < patch):
        raise ConfigError(
            f"config.data.image_size ({image}) must be a multiple of config.model.image.patch_size ({patch}) "
            f"(at least the patch without a conv stem), itself a multiple of 2**config.model.image.conv_stem_depth "
            f"({2**stem}); change one of them."
        )
    if c.text.tokenizer == "sentencepiece" and c.text.tokenizer_path and not os.path.isfile(c.text.tokenizer_path):
        raise ConfigError(
            f"Tokenizer file {c.text.tokenizer_path!r} does not exist; fix config.text.tokenizer_path "
            "or set it to '' to train a tokenizer on the training captions."
        )
    if c.model.attention == "cudnn" and c.model.dtype != "bfloat16":
        raise ConfigError("config.model.attention='cudnn' runs in bfloat16 only; set config.model.dtype=bfloat16.")
    if c.model.attention != "dense" and c.model.text.kind == "clip" and c.model.text.dropout_rate:
        raise ConfigError(
            f"config.model.attention={c.model.attention!r} has no attention dropout; set config.model.attention="
            "'dense' or config.model.text.dropout_rate=0."
        )
    kind, pool = c.model.text.kind, c.model.text.pool
    if pool not in TEXT_POOLING[kind]:
        raise ConfigError(
            f"config.model.text.pool {pool!r} is not a pooling of the {kind} text tower; "
            f"use one of {list(TEXT_POOLING[kind])}."
        )
    if c.text.tokenizer != "sentencepiece" and not c.text.tokenizer_path:
        raise ConfigError(
            f"The {c.text.tokenizer} tokenizer is pretrained; set config.text.tokenizer_path to its vocabulary."
        )
    if c.text.tokenizer != "sentencepiece" and not os.path.exists(c.text.tokenizer_path):
        raise ConfigError(f"config.text.tokenizer_path {c.text.tokenizer_path!r} does not exist; fix the path.")
    if c.init_from.pretrained and not os.path.exists(c.init_from.pretrained):
        raise ConfigError(f"config.init_from.pretrained {c.init_from.pretrained!r} does not exist; fix the path.")
    if c.init_from.pretrained and c.init_from.workdir:
        raise ConfigError("config.init_from.pretrained and config.init_from.workdir are both set; keep one of them.")
    source = c.init_from.workdir
    if source and not os.path.isdir(os.path.join(source, "checkpoints")):
        raise ConfigError(
            f"config.init_from.workdir {source!r} holds no checkpoints folder; pass the --workdir of a trained "
            "run, or '' to start from random initialisation."
        )
    if source and not (c.init_from.param_prefixes and all(c.init_from.param_prefixes)):
        raise ConfigError(
            "config.init_from.param_prefixes must name at least one parameter path prefix to copy, "
            "e.g. ('image_tower',)."
        )


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError, naming the key and the fix, for the first problem found; needs no jax backend."""
    flat = flat_items(config)
    # A method's own section, config.<objective> (e.g. config.clip_refine.alpha), is defined with its
    # defaults by the method's config file, so the base config has no entry to check it against.
    # config.evals holds named entries of its own (evaluation/eval_types.py checks them).
    own = (f"{config.get('objective', '')}.", "evals.")
    _check_types({k: v for k, v in flat.items() if not k.startswith(own)}, flat_items(get_base_config(None)))
    _check_choices(flat)
    _check_ranges(flat)
    _check_relations(config)
    check_method_options(config)
    check_captioner(config)  # after the method's options: reads the CLIP and language-model runs' records
    validate_evals(config, text_only=config.data.name in TEXT_DATASETS)
    try:
        check_objective_options(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def validate_batch_division(batch_size: int, device_count: int, process_count: int, microbatches: int = 1) -> None:
    """The global batch splits evenly over the processes and over the devices of the mesh's batch axes,
    and with GradCache, each micro-batch too."""
    for count, what in ((process_count, "processes"), (device_count, "devices")):
        if batch_size % count:
            raise ConfigError(
                f"config.batch_size ({batch_size}) is not divisible by the {count} {what}; "
                f"choose a multiple of {math.lcm(device_count * microbatches, process_count)}."
            )
    if batch_size % (device_count * microbatches):
        raise ConfigError(
            f"config.batch_size ({batch_size}) does not split into config.microbatches ({microbatches}) "
            f"micro-batches of a multiple of the {device_count} devices; choose a multiple of "
            f"{math.lcm(device_count * microbatches, process_count)} or fewer micro-batches."
        )


def validate_workdir(workdir: str) -> None:
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_probe.{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"Cannot write to workdir {workdir!r} ({e.strerror}); pass a writable --workdir.") from None
