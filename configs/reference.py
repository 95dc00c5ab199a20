"""The config reference table of docs/config.md, generated from the base config.

python -m configs.reference    # prints the markdown table docs/config.md holds
"""

from __future__ import annotations

from configs import common

DESCRIPTIONS = {
    "seed": "Seed of parameter init, data order and augmentation.",
    "objective": "The method's loss, by name (`losses/objectives.py`).",
    "total_steps": "Training steps.",
    "batch_size": "Global batch size (all devices and processes).",
    "log_every_steps": "Interval of the progress line and train metrics.",
    "eval_every_steps": "Interval of zero-shot and retrieval evaluation (also run at the end).",
    "checkpoint_every_steps": "Interval of checkpoints (also written at the end).",
    "keep_checkpoints": "How many of the newest checkpoints to keep.",
    "data.name": "Training data: `shapes` (embedded, procedural), or your files: `webdataset`, `csv`, `jsonl`, "
    "`tfds`, `array_record` (docs/data.md); text only: `shape_sentences`, `shape_documents`, "
    "`shape_commands` (embedded), `sentences`, `nli`, `documents`, `dialogs` (docs/text.md); language models: "
    "`lm_text`, `preference_text` (PHF), `expository_text`, `web_text` (1.5-Pints), `icl_tasks` (MEND) (embedded), "
    "`sentences`, "
    "`scored_documents` (PHF) (docs/language.md); clips: "
    "`shapes_video` (embedded), `video_folders` (docs/video.md); editing pairs: `shape_edits` (embedded; SuperEdit, "
    "docs/editing.md).",
    "data.train_size": "Number of distinct shapes training examples (real data uses every example).",
    "data.image_size": "Image side in pixels.",
    "data.cache_dir": "Where rendered shapes splits are cached; `''` keeps them in memory only.",
    "data.text_augmentation": "`none` (original caption) or `laclip` (uniform over caption and K rewrites).",
    "data.rewrite_warmup_steps": "`laclip`: steps over which the chance of drawing a rewrite rises linearly from 0 to "
    "the paper's K/(K+1); 0 draws uniformly from the start.",
    "data.crop_scale": "Area range of the random resized crop; `(1.0, 1.0)` disables it.",
    "data.worker_count": "grain worker processes; 0 reads in the main process.",
    "data.read_threads": "grain reader threads per process; 0 reads inline, fastest for in-memory data (2 for files).",
    "data.path": "Real data: tar shards or ArrayRecord files (comma-separated files, globs, folders), one CSV/TSV/"
    "JSONL file, or the TFDS data dir; for `sentences`, `nli`, `documents`: the text file.",
    "data.image_root": "Folder that relative image paths of a CSV/JSONL file start from; `''` = the file's folder.",
    "data.image_column": "Image column: CSV header name, JSONL key or TFDS feature path; `''` = column 0 / `image`.",
    "data.caption_column": "Caption column: CSV header name, JSONL key or TFDS feature path (e.g. `captions/text`); "
    "`''` = column 1 / `caption`.",
    "data.rewrite_paths": "LaCLIP rewrite files of a CSV: line i of each is a rewrite of data row i.",
    "data.tfds_name": "TFDS dataset name (prepared with `--file_format=array_record`), e.g. `coco_captions`.",
    "data.tfds_split": "TFDS split to train on.",
    "data.context_window": "Documents (CCP): a centre's context is a sentence at most this many positions away.",
    "text.tokenizer_path": "SentencePiece model file (`''` trains one on the captions, cached in the workdir), or the "
    "pretrained tokenizer's file or folder.",
    "text.vocab_size": "Vocabulary size of a trained tokenizer.",
    "model.image.width": "Image tower width.",
    "model.image.depth": "Image tower blocks.",
    "model.image.heads": "Image tower attention heads.",
    "model.image.patch_size": "Patch side in pixels.",
    "model.image.conv_stem_depth": "3x3 stride-2 convolutions replacing that many factors of 2 of the patch.",
    "model.image.pool": "`cls` token, `gap` (mean of tokens) or `map` (attention-pooling head, SigLIP).",
    "model.image.ln_pre": "LayerNorm before the encoder (CLIP: true; SigLIP: false).",
    "model.image.mlp_dim": "Hidden width of the image tower's MLPs; 0 = 4 x width.",
    "model.text.mlp_dim": "Hidden width of the text tower's MLPs; 0 = 4 x width.",
    "model.text.causal": "`clip` tower: causal attention (CLIP); false attends both ways, padding included (SigLIP).",
    "model.text.eos_token_id": "`clip` tower with `pool=eos`: the id whose first position is pooled.",
    "model.image_projection": "Image features from the pooled tower output: `linear` (bias-free Dense, CLIP), "
    "`affine` (Dense with bias) or `none` (SigLIP; `embed_dim` = image width).",
    "model.text_projection": "Text features from the pooled tower output: `linear` (CLIP), `affine` (SigLIP's head) "
    "or `none` (`embed_dim` = text width).",
    "model.text.width": "Text tower width.",
    "model.text.depth": "Text tower blocks.",
    "model.text.heads": "Text tower attention heads.",
    "model.text.max_len": "Tokens per caption, BOS and EOS included.",
    "model.text.dropout_rate": "Text tower dropout in training mode (attention, residuals, embeddings); SimCSE: 0.1.",
    "model.embed_dim": "Joint embedding dimension.",
    "model.logit_scale_init": "Initial log of the logit scale (CLIP: log 1/0.07; SigLIP: log 10).",
    "model.logit_bias_init": "Initial logit bias (SigLIP: -10).",
    "model.dtype": "Compute dtype (`float32` or `bfloat16`); parameters stay float32.",
    "model.remat": "Recompute each transformer block (the towers' and the decoder's) in the backward pass to save "
    "memory.",
    "model.scan_layers": "Run each tower's blocks as one `lax.scan` over their parameters (stored per block as "
    "unrolled, so checkpoints and seeds are unchanged): XLA compiles one block, not `depth` (L/14: 75 s, not 127); "
    "dropout draws other masks. Two-tower models only (models/layer_scan.py).",
    "model.attention": "Attention kernel of the transformer towers: `dense` (Flax's einsum softmax), `xla` "
    "(`jax.nn.dot_product_attention`'s portable path), `cudnn` (its fused flash attention: NVIDIA GPUs, bfloat16) "
    "or `pallas` (JAX's Pallas flash attention: NVIDIA GPUs, any float dtype; interpreted, slowly, on a CPU); the "
    "last three project query, key and value with one matmul. The decoder's training step takes `xla` or `cudnn` "
    "too (its generation stays `dense`).",
    "model.layer_norm_dtype": "Output dtype of the towers' LayerNorms, which also sets the ViT's residual stream "
    "(`float32` or `bfloat16`; statistics are float32 either way).",
    "model.head_dim": "Output width of an MLP projection head on each tower (ProtoCLIP); 0 = no heads.",
    "model.head_hidden_dim": "Hidden width of those heads (used only when `model.head_dim` > 0).",
    "model.region_depth": "Cross-attention blocks of the box prompter and of the grounding head (CLOC); 0 = none.",
    "model.image_classes": "Classes of a linear classifier over the image features (COCONUT's, "
    "`configs/coconut.py`); 0 = none.",
    "model.video_frames": "Frames per clip of X-CLIP's video modules (cross-frame messages, MIT, prompts; "
    "docs/video.md); 0 = none.",
    "model.kind": "`two_tower` (image and text towers: every contrastive method), `decoder` (the language model of "
    "`models/language_model.py`: `configs/lm.py`, `configs/simctg.py`, `configs/salt.py`, "
    "`configs/phf.py`, `configs/pints.py`, `configs/mend.py:stage=icl`; docs/language.md), "
    "`captioner` (that "
    "language model reading a prefix mapped from a frozen CLIP run's embedding, models/captioner.py: "
    "`configs/limber.py`, `configs/close.py`) or `mend` (that language model reading k vectors a distiller writes "
    "from the demonstrations, models/mend.py: `configs/mend.py`) or `denoiser` (SuperEdit's instruction-conditioned "
    "editing denoiser on pixels, models/denoiser.py: `configs/superedit.py`; docs/editing.md).",
    "model.decoder.width": "`decoder`: the language model's width.",
    "model.decoder.depth": "`decoder`: its number of transformer blocks.",
    "model.decoder.heads": "`decoder`: its attention heads.",
    "model.decoder.max_len": "`decoder`: its context in tokens (prefix, prompt and generated tokens together).",
    "model.decoder.mlp_dim": "`decoder`: its MLP width; 0 = 4 x width (`gelu`), 8/3 x width rounded up to a "
    "multiple of 8 (`swiglu`: the same parameter count).",
    "model.decoder.kv_heads": "`decoder`: key-value heads, a divisor of `heads` (grouped-query attention); 0 = "
    "`heads`.",
    "model.decoder.norm": "`decoder`: `layer_norm` (GPT-2) or `rms_norm` (Llama).",
    "model.decoder.norm_eps": "`decoder`: the norms' epsilon.",
    "model.decoder.position": "`decoder`: `learned` position embeddings (GPT-2) or `rope`, rotary (Llama).",
    "model.decoder.rope_theta": "`decoder`: the rotary positions' base (`position=rope`).",
    "model.decoder.mlp": "`decoder`: `gelu` (GPT-2) or `swiglu` (Llama).",
    "model.decoder.bias": "`decoder`: biases on every projection and LayerNorm (false: Llama).",
    "model.decoder.vocab_size": "`decoder`: rows of its embedding; 0 = the tokenizer's vocabulary (a checkpoint's "
    "may hold more, e.g. padded to a multiple of 64).",
    "model.decoder.tie_embeddings": "`decoder`: the output matrix is the token embedding's transpose (false: its "
    "own `lm_head`, Llama's).",
    "generation.strategy": "Decoding of `--mode=generate` and of the `language` evaluator's default: `greedy`, `beam`, "
    "`top_k`, `nucleus` or `contrastive` (search, SimCTG) (`models/generation.py`).",
    "generation.max_new_tokens": "Tokens generated after each prompt.",
    "generation.min_new_tokens": "End of text is ruled out before this many tokens (the `language` evaluator "
    "generates exactly `max_new_tokens`).",
    "generation.top_k": "`top_k` sampling's k, and contrastive search's number of candidates.",
    "generation.top_p": "`nucleus` sampling's probability mass.",
    "generation.temperature": "Divides the logits of the sampling strategies.",
    "generation.beams": "`beam` search's beams.",
    "generation.alpha": "Contrastive search's degeneration-penalty weight α (0 = greedy).",
    "model.text_mlp_head": "Dense+tanh over the text features: `none`, `train` (training mode only, SimCSE) or "
    "`always`.",
    "loss.implementation": (
        "Contrastive loss algorithm: `dense`, `gathered`, `ring`, `tiled`, `ring_tiled`, or `fused` (Pallas "
        "kernels; plain pairs, one device)."
    ),
    "loss.tile_size": (
        "Tile side of the tiled implementations; 0 = the backend's (512 CPU, 4,096 GPU/TPU; `fused`: a power of "
        "two, 0 = 64)."
    ),
    "loss.matmul_dtype": "Operand dtype of the in-batch logits' matmuls: float32, or bfloat16 (bf16 rate; fp32 sums).",
    "optimizer.learning_rate": "Peak learning rate of AdamW.",
    "optimizer.warmup_steps": "Linear warmup steps before the cosine decay.",
    "optimizer.end_learning_rate_factor": "Final learning rate as a fraction of the peak.",
    "optimizer.weight_decay": "Decoupled weight decay (not on biases, norms or the temperature).",
    "optimizer.b1": "Adam beta 1.",
    "optimizer.b2": "Adam beta 2.",
    "optimizer.eps": "Adam epsilon.",
    "optimizer.grad_clip_norm": "Global gradient-norm clip.",
    "eval.num_examples": "Held-out test images for zero-shot and retrieval.",
    "eval.batch_size": "Batch size of evaluation encoding.",
    "eval.sts_files": "Text-only runs: STS files or SentEval folders to report Spearman on; `()` = embedded pairs.",
    "max_consecutive_skipped_steps": "Non-finite steps in a row (each skipped, params unchanged) that stop the run.",
    "init_from.workdir": "Another run's workdir whose latest checkpoint seeds a fresh run; `''` = random init.",
    "mesh.data": "Devices on the `data` mesh axis (batch split, parameters replicated); -1 fills.",
    "mesh.fsdp": "Devices on the `fsdp` axis (batch split, large parameters and optimizer state split); -1 fills.",
    "mesh.model": "Devices on the `model` axis (attention heads and MLP units split); -1 fills.",
    "mesh.min_shard_size": "Parameters with fewer elements stay replicated on every device.",
    "microbatches": "GradCache micro-batches per step (loss still over the global batch); 1 = off.",
    "distributed.initialize": "`auto` (when SLURM, multi-host TPU or JAX_COORDINATOR_ADDRESS shows several "
    "processes), `on` or `off`: call `jax.distributed.initialize()`.",
    "distributed.coordinator_address": "host:port of process 0; `''` = from the environment.",
    "distributed.num_processes": "Processes in the job; 0 = from the environment.",
    "distributed.process_id": "This process's index; -1 = from the environment.",
    "dry_run.devices": "Devices `--dry_run` compiles the train step for (fake CPU devices).",
    "dry_run.device_memory_gib": "Per-device memory `--dry_run` checks the compiled step against.",
    "init_from.param_prefixes": "Parameter path prefixes copied by `init_from`, e.g. `('image_tower',)`.",
    "init_from.pretrained": "OpenAI/open_clip/HF CLIP, HF SigLIP or BERT-family checkpoint (file or folder) "
    "converted into the params under `param_prefixes` (`interop/`); `''` = none.",
    "text.tokenizer": "`sentencepiece`, `wordpiece` (BERT `tokenizer.json`), `clip_bpe` (CLIP's BPE merges), "
    "`siglip` (SigLIP's `spiece.model`) or `llama` (a Llama-family `tokenizer.model`, its ids relabelled: "
    "docs/pretrained.md), read from `tokenizer_path`.",
    "model.text.kind": "Text tower: `clip` (causal transformer) or `bert` (bidirectional, post-norm).",
    "model.text.pool": "`last` non-padding token, `argmax` id (CLIP's end of text), `eos` (first `eos_token_id`) "
    "or `final` position (SigLIP) for `clip`; `mean` or `first` for `bert`.",
    "model.image.activation": "MLP activation: `gelu_tanh`, `gelu` (exact) or `quick_gelu` (OpenAI CLIP).",
    "model.text.activation": "MLP activation: `gelu_tanh`, `gelu` (exact) or `quick_gelu` (OpenAI CLIP).",
    "model.image.layer_norm_eps": "LayerNorm epsilon (CLIP: 1e-5).",
    "model.text.layer_norm_eps": "LayerNorm epsilon (CLIP: 1e-5, BERT: 1e-12).",
    "evals.shapes.type": "Evaluator type of the entry `shapes` (docs/evaluation.md): `shapes_zero_shot`, zero-shot, "
    "retrieval, compositionality and geometry on the embedded shapes test images.",
    "evals.shapes.prefix": "Prepended to the entry's metric names; `''` keeps `zero_shot/shape` etc.",
    "evals.heldout.type": "Evaluator type of the entry `heldout`: `retrieval`, image <-> text R@1/5/10 on "
    "held-out files.",
    "evals.heldout.prefix": "Prepended to the entry's metric names (`heldout/image_to_text_R@1`, ...).",
    "evals.heldout.data": "Format of the held-out files (`webdataset`, `csv`, `jsonl`, `tfds`, `array_record`); "
    "`''` = `data.name`'s.",
    "evals.heldout.path": "Held-out split of your data, in the forms of `data.path` (e.g. a WebDataset shard pattern); "
    "`''` = off.",
    "evals.heldout.split": "TFDS split of the held-out data (`data.path` is then the TFDS data dir).",
    "optimizer.frozen_prefixes": "Parameter path prefixes the optimizer never updates, e.g. `('text_tower',)` (LiT).",
}


def reference_table() -> str:
    rows = ["| key | default (`size=tiny`) | meaning |", "|---|---|---|"]
    for key, value in sorted(common.flat_items(common.get_base_config(None)).items()):
        shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
        rows.append(f"| `{key}` | `{shown}` | {DESCRIPTIONS[key]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
