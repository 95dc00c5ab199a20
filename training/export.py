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
from interop import export_hf, llama_weights, siglip_weights
from training.trained_runs import _latest_step, load_trained_run, run_tokenizer_path


def export_run(config: ml_collections.ConfigDict, workdir: str, folder: str = "") -> tuple[str, str, int]:
    """Writes the latest checkpoint of `workdir` to `folder` ('' = <workdir>/hf); returns (folder, the format's
    transformers class, the checkpoint's step). The format's requirements are checked before anything loads."""
    if config.model.kind == "captioner":
        raise ConfigError("A captioner reads a frozen CLIP run; export that run, or its language model's run.")
    if config.model.kind in ("mend", "denoiser"):
        raise ConfigError(
            f"A {config.model.kind} run has no Hugging Face format to export to; load its checkpoints from "
            "<workdir>/checkpoints with training/trained_runs.load_trained_run instead."
        )
    kind, check = (
        ("LlamaForCausalLM", llama_weights.check_exportable) if config.model.kind == "decoder" else
        ("SiglipModel", siglip_weights.check_exportable) if config.objective == "siglip" else
        ("CLIPModel", export_hf.check_exportable)
    )  # fmt: skip
    check(config)
    if kind != "LlamaForCausalLM" and config.text.tokenizer != "sentencepiece":
        raise ConfigError(
            f"--mode=export writes the run's SentencePiece tokenizer beside the weights, and this run reads a "
            f"{config.text.tokenizer!r} one; export with interop/export_hf.py from Python and keep that tokenizer."
        )
    if _latest_step(workdir, config.keep_checkpoints) is None:
        raise ConfigError(f"{workdir} holds no checkpoint; train it first with the same command without --mode.")
    folder = folder or os.path.join(workdir, "hf")
    _, tokenizer, params, step = load_trained_run(config, workdir)
    tokenizer_path = run_tokenizer_path(config, workdir)
    if kind == "LlamaForCausalLM":
        return llama_weights.export_hf_llama(params, config, folder, tokenizer_path=tokenizer_path), kind, step
    if kind == "SiglipModel":
        siglip_weights.export_hf_siglip(params, config, folder, vocab_size=tokenizer.vocab_size)
    else:
        export_hf.export_hf_clip(params, config, folder, vocab_size=tokenizer.vocab_size, eos_token_id=EOS_ID)
    shutil.copyfile(tokenizer_path, os.path.join(folder, "tokenizer.model"))
    return folder, kind, step
