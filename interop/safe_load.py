"""Reading PyTorch-ecosystem checkpoints as {name: float32 NumPy array}, never executing pickled code.

safetensors files need only the `safetensors` package; PyTorch pickles (`.pt`, `.pth`, `.bin`) are read
with `torch.load(weights_only=True)`, PyTorch's restricted unpickler that rebuilds tensors and plain
containers and refuses every other global, so a pickle that would run code is rejected.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from configs.errors import ConfigError

# Files a Hugging Face / sentence-transformers / open_clip folder keeps its weights in, by preference.
WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
# Buffers that some checkpoints store beside the weights; they hold no learned values.
IGNORED_BUFFERS = ("position_ids", "attn_mask", "input_resolution", "context_length", "vocab_size")


def weights_file(path: str) -> str:
    """`path` itself if it is a file, else the first of WEIGHT_FILES inside the folder `path`."""
    if os.path.isfile(path):
        return path
    if os.path.isdir(path):
        for name in WEIGHT_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise ConfigError(f"The folder {path!r} holds none of {list(WEIGHT_FILES)}; pass the checkpoint file itself.")
    raise ConfigError(f"The checkpoint {path!r} does not exist; fix the path.")


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """{parameter name: float32 array} from a safetensors or PyTorch file, or a folder holding one.

    A training checkpoint's {"state_dict": ...} is unwrapped and DistributedDataParallel's "module."
    prefix dropped. Raises ConfigError for a missing file or a pickle that is not plain tensors.
    """
    path = weights_file(path)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        state = load_file(path)
    else:
        state = _load_torch_pickle(path)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {
        k: np.asarray(v, np.float32)
        for k, v in state.items()
        if hasattr(v, "shape") and k.split(".")[-1] not in IGNORED_BUFFERS
    }


def _load_torch_pickle(path: str) -> dict:
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"Reading the PyTorch file {path!r} needs torch; install the interop extra (pip install -e '.[interop]') "
            "or convert it to safetensors."
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"Refused to load {path!r}: it is not a plain tensor pickle and loading it would run code ({reason}); "
            "save its state_dict() or a safetensors file from a trusted environment and pass that."
        ) from None
    return _to_numpy(state)


def _to_numpy(tree):
    """Tensors (any float dtype, bfloat16 included) -> float32 NumPy; containers recursively."""
    import torch

    if isinstance(tree, torch.Tensor):
        return tree.detach().to(torch.float32).numpy() if tree.is_floating_point() else tree.numpy()
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return tree
