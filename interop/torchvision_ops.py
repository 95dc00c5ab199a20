"""Importing transformers or open_clip beside the CPU torchvision wheel (ENVIRONMENT.md)."""

from __future__ import annotations

_LIBRARIES: list = []  # a torch.library registration lives as long as its Library object


def declare_torchvision_ops(torch) -> None:
    """Import torchvision, first declaring the ops that the CPU wheel fails to register ("operator
    torchvision::nms does not exist"); without them `import transformers` and `import open_clip` fail."""
    try:
        import torchvision  # noqa: F401
    except (RuntimeError, ImportError):
        if not hasattr(torch.ops.torchvision, "nms"):
            library = torch.library.Library("torchvision", "DEF")
            for op in ("nms", "qnms"):
                library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _LIBRARIES.append(library)
