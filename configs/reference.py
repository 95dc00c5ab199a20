"""The config reference table of README.md, generated from the base config.

python -m configs.reference    # prints the markdown table README.md holds
"""

from __future__ import annotations

from configs import common
from training.validation import flat_items

DESCRIPTIONS = {
    "seed": "Seed of parameter init, data order and augmentation.",
    "objective": "The method's loss, by name (`losses/objectives.py`).",
    "total_steps": "Training steps.",
    "batch_size": "Global batch size (all devices and processes).",
    "log_every_steps": "Interval of the progress line and train metrics.",
    "eval_every_steps": "Interval of zero-shot and retrieval evaluation (also run at the end).",
    "checkpoint_every_steps": "Interval of checkpoints (also written at the end).",
    "keep_checkpoints": "How many of the newest checkpoints to keep.",
    "data.name": "Training data: `shapes` (embedded, procedural).",
    "data.train_size": "Number of distinct training examples.",
    "data.image_size": "Image side in pixels.",
    "data.cache_dir": "Where rendered shapes splits are cached; `''` keeps them in memory only.",
    "data.text_augmentation": "`none` (original caption) or `laclip` (uniform over caption and K rewrites).",
    "data.crop_scale": "Area range of the random resized crop; `(1.0, 1.0)` disables it.",
    "data.worker_count": "grain worker processes; 0 reads in the main process.",
    "text.tokenizer_path": "SentencePiece model file; `''` trains one on the captions, cached in the workdir.",
    "text.vocab_size": "Vocabulary size of a trained tokenizer.",
    "model.image.width": "Image tower width.",
    "model.image.depth": "Image tower blocks.",
    "model.image.heads": "Image tower attention heads.",
    "model.image.patch_size": "Patch side in pixels.",
    "model.image.conv_stem_depth": "3x3 stride-2 convolutions replacing that many factors of 2 of the patch.",
    "model.image.pool": "`cls` token or `gap` (mean of tokens).",
    "model.text.width": "Text tower width.",
    "model.text.depth": "Text tower blocks.",
    "model.text.heads": "Text tower attention heads.",
    "model.text.max_len": "Tokens per caption, BOS and EOS included.",
    "model.embed_dim": "Joint embedding dimension.",
    "model.logit_scale_init": "Initial log of the logit scale (CLIP: log 1/0.07; SigLIP: log 10).",
    "model.logit_bias_init": "Initial logit bias (SigLIP: -10).",
    "model.dtype": "Compute dtype (`float32` or `bfloat16`); parameters stay float32.",
    "model.remat": "Recompute each transformer block in the backward pass to save memory.",
    "loss.implementation": "Contrastive loss algorithm: `dense`, `gathered`, `ring`, `tiled`, `ring_tiled`.",
    "loss.tile_size": "Tile side of the tiled implementations.",
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
    "max_consecutive_skipped_steps": "Non-finite steps in a row (each skipped, params unchanged) that stop the run.",
    "init_from.workdir": "Another run's workdir whose latest checkpoint seeds a fresh run; `''` = random init.",
    "init_from.param_prefixes": "Parameter path prefixes copied by `init_from`, e.g. `('image_tower',)`.",
}


def reference_table() -> str:
    rows = ["| key | default (`size=tiny`) | meaning |", "|---|---|---|"]
    for key, value in sorted(flat_items(common.get_base_config(None)).items()):
        shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
        rows.append(f"| `{key}` | `{shown}` | {DESCRIPTIONS[key]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_table())
