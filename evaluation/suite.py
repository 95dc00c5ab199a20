"""Every evaluator over every dataset, given an image and a text encoder: results plus what the report draws."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from evaluation import binding_eval, compositionality, few_shot, linear_probe, modality_gap, retrieval, zero_shot
from evaluation.classification import classification_metrics
from evaluation.eval_data import EvalDataset

# images: uint8 [N, H, W, 3] -> (features [N, D] before normalisation, embeddings [N, D] normalised)
ImageEncoder = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# texts -> normalised embeddings [len(texts), D]
TextEncoder = Callable[[Sequence[str]], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Result:
    """One (dataset, task) evaluation: CLIP_benchmark's unit of output."""

    dataset: str
    task: str
    metrics: dict[str, float]


@dataclasses.dataclass
class SuiteOutput:
    results: list[Result] = dataclasses.field(default_factory=list)
    # What the report draws, by dataset name: embeddings, scores and the images they belong to.
    views: dict[str, dict] = dataclasses.field(default_factory=dict)


def zero_shot_logits(image_embeddings: np.ndarray, prompts: list[list[str]], encode_texts: TextEncoder) -> np.ndarray:
    """[N, C] cosine of each image to each class's prompt ensemble ([C][templates] prompts)."""
    flat = [p for per_class in prompts for p in per_class]
    prompt_embeddings = encode_texts(flat).reshape(len(prompts), len(prompts[0]), -1)
    return image_embeddings @ zero_shot.class_embeddings(prompt_embeddings).T


def evaluate_dataset(dataset: EvalDataset, encode_images: ImageEncoder, encode_texts: TextEncoder) -> SuiteOutput:
    """Zero-shot classification, linear probe and few-shot for every labelling; retrieval, embedding
    geometry and compositionality where the dataset has captions and hard negatives; binding where it has
    binding images."""
    out = SuiteOutput()
    encoded = {split: encode_images(images) for split, images in dataset.images.items()}
    features = {split: f for split, (f, _) in encoded.items()}
    embeddings = {split: e for split, (_, e) in encoded.items()}
    view: dict = {"images": dataset.images["test"], "image_embeddings": embeddings["test"], "zero_shot": {}}
    for label, label_set in dataset.label_sets.items():
        name, num_classes, labels = dataset.task_name(label), len(label_set.class_names), label_set.labels
        logits = zero_shot_logits(embeddings["test"], label_set.prompts, encode_texts)
        out.results.append(Result(name, "zeroshot_classification", classification_metrics(logits, labels["test"])))
        view["zero_shot"][label] = {"logits": logits, "labels": labels["test"], "class_names": label_set.class_names}
        probe = linear_probe.linear_probe(
            *((features[s], labels[s]) for s in ("train", "validation", "test")), num_classes=num_classes
        )
        out.results.append(Result(name, "linear_probe", probe))
        shots = few_shot.few_shot_metrics(
            (embeddings["train"], labels["train"]), (embeddings["test"], labels["test"]), num_classes
        )
        out.results.append(Result(name, "few_shot", shots))
    if dataset.captions is not None:
        captions = [c for per_image in dataset.captions for c in per_image]
        caption_image = np.repeat(np.arange(len(dataset.captions)), [len(c) for c in dataset.captions])
        caption_embeddings = encode_texts(captions)
        positives = retrieval.caption_positives(caption_image, len(dataset.captions))
        recall = retrieval.recall_both_ways(retrieval.similarity(embeddings["test"], caption_embeddings), positives)
        out.results.append(Result(dataset.name, "zeroshot_retrieval", _clip_benchmark_recall_names(recall)))
        first = np.searchsorted(caption_image, np.arange(len(dataset.captions)))  # each image's first caption
        geometry = modality_gap.embedding_geometry(embeddings["test"], caption_embeddings[first])
        out.results.append(Result(dataset.name, "embedding_geometry", geometry))
        view.update(captions=[c[0] for c in dataset.captions], text_embeddings=caption_embeddings[first])
        if dataset.hard_negatives is not None:
            negatives = encode_texts([n for per_image in dataset.hard_negatives for n in per_image])
            negatives = negatives.reshape(len(dataset.hard_negatives), len(dataset.hard_negative_types), -1)
            selection = compositionality.caption_selection_accuracy(
                embeddings["test"], caption_embeddings[first], negatives, dataset.hard_negative_types
            )
            out.results.append(Result(dataset.name, "compositionality", selection))
            view["compositionality"] = selection
    if dataset.binding is not None:
        binding = binding_eval.evaluate_binding(dataset.binding, lambda x: encode_images(x)[1], encode_texts)
        out.results.append(Result(dataset.name, "binding", binding))
    out.views[dataset.name] = view
    return out


def _clip_benchmark_recall_names(recall: dict[str, float]) -> dict[str, float]:
    """CLIP_benchmark's names: `image_retrieval` is text->image (images are retrieved), `text_retrieval` image->text."""
    renamed = {}
    for key, value in recall.items():
        direction, k = key.split("_R@")
        kind = "image_retrieval" if direction == "text_to_image" else "text_retrieval"
        renamed[f"{kind}_recall@{k}"] = value
    return renamed


def run_suite(datasets: Sequence[EvalDataset], encode_images: ImageEncoder, encode_texts: TextEncoder) -> SuiteOutput:
    """`evaluate_dataset` over `datasets`, results concatenated in order."""
    out = SuiteOutput()
    for dataset in datasets:
        part = evaluate_dataset(dataset, encode_images, encode_texts)
        out.results.extend(part.results)
        out.views.update(part.views)
    return out
