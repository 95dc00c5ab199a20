"""Where a trained run keeps shape and colour: the share of each tower's class-mean variance that shape
and colour explain, for canonical words and for the rewrites' synonyms, and a nearest-class-mean shape
probe on the test images. Reads a run's latest checkpoint.

    python benchmarks/shape_probe.py --workdir=runs/laclip
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import ml_collections
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a script: the repository's packages are importable from anywhere

from evaluation.run import ModelEncoders, restore_params  # noqa: E402
from input_pipeline import shapes  # noqa: E402
from input_pipeline.tokenizer import load_tokenizer  # noqa: E402
from models.two_tower import build_model  # noqa: E402


def variance_shares(class_means: np.ndarray) -> tuple[float, float]:
    """[S, C, D] means per (shape, colour) -> (share of their variance along shape, along colour)."""
    centre = class_means.mean((0, 1), keepdims=True)
    total = np.sum((class_means - centre) ** 2)
    by_shape = np.sum((class_means.mean(1, keepdims=True) - centre) ** 2) * class_means.shape[1]
    by_colour = np.sum((class_means.mean(0, keepdims=True) - centre) ** 2) * class_means.shape[0]
    return float(by_shape / total), float(by_colour / total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--num_examples", type=int, default=1000)
    args = parser.parse_args()
    with open(os.path.join(args.workdir, "run_info.json"), encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f)["config"])
    tokenizer = load_tokenizer(os.path.join(args.workdir, "tokenizer.model"))
    model = build_model(config, tokenizer.vocab_size)
    params, step = restore_params(config, args.workdir, model)
    encoders = ModelEncoders(model, params, tokenizer, config.model.text.max_len, 256)
    names, colours = shapes.SHAPES, shapes.COLOURS
    print(f"step {step}")
    for form, label in ((None, "canonical shape words"), (0, "first synonym"), (1, "second synonym")):
        words = {s: s if form is None else shapes._SYNONYMS[s][form] for s in names}
        texts = [f"a {c} {words[s]}" for s in names for c in colours]
        shares = variance_shares(encoders.texts(texts).reshape(len(names), len(colours), -1))
        print(f"text, {label}: shape share {shares[0]:.3f}, colour share {shares[1]:.3f}")
    source = shapes.ShapesSource("test", args.num_examples, image_size=config.data.image_size)
    records = [source[i] for i in range(len(source))]
    _, embeddings = encoders.images(np.stack([r["image"] for r in records]))
    shape, colour = np.array([r["shape"] for r in records]), np.array([r["colour"] for r in records])
    means = np.zeros((len(names), len(colours), embeddings.shape[1]))
    for s in range(len(names)):
        for c in range(len(colours)):
            if np.any((shape == s) & (colour == c)):
                means[s, c] = embeddings[(shape == s) & (colour == c)].mean(0)
    shares = variance_shares(means)
    print(f"image: shape share {shares[0]:.3f}, colour share {shares[1]:.3f}")
    fit = np.arange(len(records)) < len(records) // 2
    centroids = np.stack([embeddings[fit & (shape == s)].mean(0) for s in range(len(names))])
    accuracy = np.mean((embeddings[~fit] @ centroids.T).argmax(1) == shape[~fit])
    print(f"image shape by nearest class mean (held-out half): {accuracy:.3f} (chance {1 / len(names):.3f})")


if __name__ == "__main__":
    main()
