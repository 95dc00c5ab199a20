"""`python main.py --mode=export`: a trained run's latest checkpoint as a Hugging Face folder that transformers loads.

- a Llama-style decoder language model (configs/pints.py, configs/lm.py with llama_style() or `:pretrained=`) ->
  `LlamaForCausalLM` (interop/llama_weights.py export_hf_llama: model.safetensors, config.json, tokenizer.model);
- a two-tower model -> `SiglipModel` for a sigmoid-loss run (configs/siglip.py), else `CLIPModel`
  (interop/siglip_weights.py, interop/export_hf.py), with the run's tokenizer.model beside them; each format's
  requirements on the towers are checked there, and a model it cannot hold is refused in one sentence.
"""

from __future__ import annotations

import os
import shutil

import ml_collections

from configs.errors import ConfigError
from input_pipeline.token_ids import EOS_ID
from interop.export_hf import export_hf_clip
from interop.llama_weights import export_hf_llama
from interop.siglip_weights import export_hf_siglip
from training.trained_runs import _latest_step, load_trained_run, run_tokenizer_path


def export_run(config: ml_collections.ConfigDict, workdir: str, folder: str = "") -> tuple[str, str, int]:
    """Writes the latest checkpoint of `workdir` to `folder` ('' = <workdir>/hf); returns (folder, the format's
    transformers class, the checkpoint's step)."""
    if config.model.kind == "captioner":
        raise ConfigError("A captioner reads a frozen CLIP run; export that run, or its language model's run.")
    if _latest_step(workdir, config.keep_checkpoints) is None:
        raise ConfigError(f"{workdir} holds no checkpoint; train it first with the same command without --mode.")
    folder = folder or os.path.join(workdir, "hf")
    _, tokenizer, params, step = load_trained_run(config, workdir)
    tokenizer_path = run_tokenizer_path(config, workdir)
    if config.model.kind == "decoder":
        return export_hf_llama(params, config, folder, tokenizer_path=tokenizer_path), "LlamaForCausalLM", step
    if config.text.tokenizer not in ("", "sentencepiece"):
        raise ConfigError(
            f"--mode=export writes the run's SentencePiece tokenizer beside the weights, and this run reads a "
            f"{config.text.tokenizer!r} one; export with interop/export_hf.py from Python and keep that tokenizer."
        )
    if config.objective == "siglip":
        export_hf_siglip(params, config, folder, vocab_size=tokenizer.vocab_size)
        kind = "SiglipModel"
    else:
        export_hf_clip(params, config, folder, vocab_size=tokenizer.vocab_size, eos_token_id=EOS_ID)
        kind = "CLIPModel"
    shutil.copyfile(tokenizer_path, os.path.join(folder, "tokenizer.model"))
    return folder, kind, step
