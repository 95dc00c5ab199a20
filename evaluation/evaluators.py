"""The evaluators named in config.evals (evaluation/eval_types.py), built for one model and tokenizer: the
training loop and `--mode=eval` (evaluation/run.py) run the same ones."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from configs.common import VIDEO_DATASETS
from configs.errors import ConfigError
from evaluation import eval_types
from evaluation.captioning_eval import CaptioningEvaluator
from evaluation.dialog_eval import DialogEvaluator
from evaluation.edit_eval import EditEvaluator
from evaluation.fact_probe import FactProbeEvaluator
from evaluation.in_context_eval import InContextEvaluator
from evaluation.incremental_eval import IncrementalEvaluator
from evaluation.language_eval import KnowledgeConflictEvaluator, LanguageEvaluator
from evaluation.minimal_pairs import MinimalPairsEvaluator
from evaluation.preference_eval import PreferenceEvaluator, embedded_documents
from evaluation.proclip import proclip_retrieval
from evaluation.prompt_eval import PromptEvaluator
from evaluation.region_eval import RegionEvaluator
from evaluation.retrieval import retrieval_metrics
from evaluation.second_language import second_language_retrieval
from evaluation.segmentation_eval import SegmentationEvaluator, shapes_masks
from evaluation.shapes_eval import ShapesEvaluator, batched
from evaluation.sts_data import STSSet, load_sts
from evaluation.sts_eval import STSEvaluator
from evaluation.video_eval import VideoEvaluator
from input_pipeline import acceptability_text, child_text, icl_tasks, lm_text, segmentation, sentences, transforms
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.preference_files import read_scored_documents
from input_pipeline.quality_text import QUALITY_DATASETS, expository
from input_pipeline.shape_edits import EDIT_DATASET
from input_pipeline.sources import expand_paths, open_raw_source, usable_examples
from input_pipeline.text_sources import read_sentences
from input_pipeline.tokenizer import Tokenizer
from training.objective_inputs import prepare_inputs

EMBEDDED_STS_SEED = 0


def held_out_examples(data: ml_collections.ConfigDict, num_examples: int, key: str, **options) -> list[dict]:
    """The first `num_examples` usable examples of held-out files (`data`: a config.data with their name and path),
    images the central squares of config.data.image_size; `options` of DecodedSource (masks). ConfigError naming
    `key` when they cannot be read or hold fewer than 2."""
    paths = expand_paths(data.path, ())
    missing = [p for p in paths if not os.path.exists(p)] or ([] if paths else [data.path])
    if data.name != "tfds" and missing:
        raise ConfigError(f"{key} names {missing[0]!r}, which does not exist; point it at your held-out files.")
    try:
        source = DecodedSource(open_raw_source(data), data.image_size, **options)
    except ConfigError as e:
        raise ConfigError(f"{key} {data.path!r} cannot be read: {e}") from None
    examples = usable_examples(source, num_examples)
    if len(examples) < 2:
        raise ConfigError(f"{key} {data.path!r} holds {len(examples)} usable examples; name at least 2.")
    return examples


class HeldOutRetrieval:
    """`evaluate(params)`: image <-> text R@1/5/10 (`image_to_text_R@k`, `text_to_image_R@k`) on the first
    `num_examples` usable examples of held-out files (`data`: a config.data with their name and path),
    caption i belonging to image i; images are centre-cropped squares of config.data.image_size."""

    def __init__(self, model, tokenizer: Tokenizer, data: ml_collections.ConfigDict, *, num_examples: int,
                 batch_size: int, max_len: int, key: str = "the held-out path"):  # fmt: skip
        examples = held_out_examples(data, num_examples, key)
        self.images = transforms.normalize_image(np.stack([r["image"] for r in examples]))
        self.captions = tokenizer.encode([r["caption"] for r in examples], max_len)
        self.batch_size = batch_size
        self.description = f"{len(examples)} held-out examples of {data.path} ({data.name})"
        self._image = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode_image)["image_embedding"])
        self._text = jax.jit(lambda p, t: model.apply({"params": p}, t, method=model.encode_text)["text_embedding"])

    def evaluate(self, params) -> dict[str, float]:
        images = batched(lambda x: self._image(params, x), self.images, self.batch_size)
        texts = batched(lambda t: self._text(params, t), self.captions, self.batch_size)
        return retrieval_metrics(images, texts)


class _Call:
    """An evaluator made of a function of the params (the post-pretraining methods' measures)."""

    def __init__(self, fn, description: str):
        self.fn, self.description = fn, description

    def evaluate(self, params) -> dict[str, float]:
        return self.fn(params)


def sts_sets(config: ml_collections.ConfigDict) -> dict[str, STSSet]:
    """config.eval.sts_files loaded, or the embedded graded pairs under the name `shapes_sts`."""
    if not config.eval.sts_files:
        return {"shapes_sts": STSSet(*sentences.sts_set(EMBEDDED_STS_SEED, config.eval.num_examples))}
    sets = {}
    try:
        for path in config.eval.sts_files:
            sets.update(load_sts(path))
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None
    return sets


class _ProclipText:
    """Retrieval through ProCLIP's text path; its frozen embedder is read once, at the first evaluation
    (training/objective_inputs.py; a fresh one from proclip.embedder_seed when the run names none)."""

    def __init__(self, config: ml_collections.ConfigDict, model, tokenizer: Tokenizer):
        self.config, self.model, self.tokenizer, self.inputs = config, model, tokenizer, None
        self.description = f"ProCLIP's text path on the embedded shapes test set ({config.eval.num_examples} images)"

    def evaluate(self, params) -> dict[str, float]:
        if self.inputs is None:
            self.inputs = prepare_inputs(self.config, params) if self.config.objective == "proclip" else {}
        n = self.config.eval.num_examples
        return proclip_retrieval(self.model, params, self.config, self.tokenizer, num_examples=n, inputs=self.inputs)


def build_evaluator(config: ml_collections.ConfigDict, name: str, model, tokenizer: Tokenizer):
    """The evaluator of one config.evals entry: an object with `evaluate(params) -> {metric: value}` and a
    `description` of what it evaluates on."""
    entry = config.evals[name]
    n, batch_size, max_len = config.eval.num_examples, config.eval.batch_size, config.model.text.max_len
    image_size = config.data.image_size
    if entry.type == "shapes_zero_shot":
        shapes = ShapesEvaluator(model, tokenizer, num_examples=n, batch_size=batch_size, image_size=image_size,
                                 max_len=max_len)  # fmt: skip
        return _Call(shapes.evaluate, f"the embedded shapes test set ({n} images)")
    if entry.type == "retrieval":
        data = eval_types.held_out_data(config, entry)
        return HeldOutRetrieval(model, tokenizer, data, num_examples=n, batch_size=batch_size, max_len=max_len,
                                key=f"config.evals.{name}.path")  # fmt: skip
    if entry.type == "sts":
        sets = sts_sets(config)
        sts = STSEvaluator(model, tokenizer, sets, batch_size=batch_size, max_len=max_len)
        return _Call(sts.evaluate, f"the STS sets {sorted(sets)}")
    if entry.type == "dialog":
        path = eval_types.entry_options(entry)["path"]
        try:
            return DialogEvaluator(model, tokenizer, num_examples=n, batch_size=batch_size, max_len=max_len, path=path)
        except (OSError, ValueError) as e:
            raise ConfigError(f"config.evals.{name}.path: {e}") from None
    if entry.type == "second_language_retrieval":
        mismatch = config.uclip.mismatch if "uclip" in config else 0.5
        return _Call(
            lambda params: second_language_retrieval(
                model, params, tokenizer, num_examples=n, image_size=image_size, max_len=max_len, mismatch=mismatch
            ),
            f"English and second-language captions of the embedded shapes test set ({n} images)",
        )
    if entry.type == "proclip_text":
        return _ProclipText(config, model, tokenizer)
    if entry.type == "regions":
        regions = RegionEvaluator(model, tokenizer, num_examples=n, batch_size=batch_size, image_size=image_size,
                                  max_len=max_len)  # fmt: skip
        return _Call(regions.evaluate, f"the regions of {n} held-out multi-object shapes images")
    if entry.type == "segmentation":
        names = tuple(config.denseclip.class_names) if "denseclip" in config else segmentation.CLASS_SETS["shape"]
        if eval_types.entry_options(entry)["path"]:  # your held-out files, masks beside the images
            data = eval_types.held_out_data(config, entry)
            examples = held_out_examples(data, n, f"config.evals.{name}.path", mask_classes=len(names),
                                         require_caption=False)  # fmt: skip
            images, labels = np.stack([e["image"] for e in examples]), np.stack([e["mask"] for e in examples])
            where = f"the masks of {len(examples)} held-out examples of {data.path} ({data.name})"
        else:
            images, labels = shapes_masks(names, n, image_size)
            where = f"the masks of {n} held-out shapes images"
        masks = SegmentationEvaluator(model, tokenizer, names, images, labels.astype(np.int32), batch_size=batch_size,
                                      max_len=max_len)  # fmt: skip
        return _Call(masks.evaluate, f"{where} ({len(names)} classes)")
    if entry.type == "video":
        frames = eval_types.video_frames(config, entry)
        video = VideoEvaluator(model, tokenizer, num_examples=n, batch_size=batch_size, image_size=image_size,
                               max_len=max_len, frames=frames)  # fmt: skip
        return _Call(video.evaluate, f"{n} held-out shapes_video clips of {frames} frames")
    if entry.type in eval_types.LANGUAGE_TYPES:
        return language_evaluator(config, entry, model, tokenizer)
    if entry.type == "minimal_pairs":
        return minimal_pairs_evaluator(config, entry, model, tokenizer)
    if entry.type == "prompt_accuracy":
        prompt = PromptEvaluator(model, tokenizer, max_len=config.model.text.max_len, num_examples=n,
                                 batch_size=batch_size)  # fmt: skip
        return _Call(prompt.evaluate, prompt.description)
    if entry.type == "class_incremental":
        incremental = IncrementalEvaluator(model, config, num_examples=n, batch_size=batch_size,
                                           image_size=image_size)  # fmt: skip
        return _Call(incremental.evaluate, incremental.description)
    if entry.type == "in_context":
        demo_len = config.mend.distiller.max_len if config.model.kind == "mend" else 0
        return InContextEvaluator(model, tokenizer, num_examples=n, batch_size=batch_size, demo_len=demo_len)
    if entry.type == "edits":
        options = eval_types.entry_options(entry)
        edits = EditEvaluator(model, tokenizer, num_examples=n, batch_size=batch_size, image_size=image_size,
                              max_len=max_len, sample_steps=options["sample_steps"],
                              text_guidance=options["text_guidance"])  # fmt: skip
        return _Call(edits.evaluate, edits.description)
    if entry.type == "captioning":
        return CaptioningEvaluator(model, tokenizer, config.init_from.workdir, config.generation, num_examples=n,
                                   batch_size=batch_size, cache_dir=config.data.cache_dir)  # fmt: skip
    raise ConfigError(f"Unknown evaluator type {entry.type!r}; use one of {sorted(eval_types.EVAL_TYPES)}.")


def minimal_pairs_evaluator(config: ml_collections.ConfigDict, entry: ml_collections.ConfigDict, model, tokenizer):
    """CLIMB's: the embedded grammar's minimal pairs and held-out child-directed documents
    (evaluation/minimal_pairs.py), scored through the masked-token head, whose [MASK] is the row after the
    tokenizer's vocabulary."""
    pairs = child_text.minimal_pairs(0, entry.per_phenomenon)
    held_out = child_text.ChildTextSource(config.eval.num_examples, seed=0, split="test")
    return MinimalPairsEvaluator(
        lambda params, tokens: model.apply({"params": params}, tokens, method=model.mlm_logits), tokenizer,
        mask_id=tokenizer.vocab_size, max_len=config.model.text.max_len, pairs=pairs,
        texts=[r["text"] for r in held_out], batch_size=config.eval.batch_size,
    )  # fmt: skip


def preference_evaluator(config: ml_collections.ConfigDict, entry: ml_collections.ConfigDict, model, tokenizer):
    """PHF's `preference` evaluator on the embedded held-out documents and samples, or on your scored `path`."""
    options, n = eval_types.entry_options(entry), config.eval.num_examples
    if options["path"]:
        try:
            documents = read_scored_documents(options["path"], config.phf.threshold)[:n]
        except (OSError, ValueError) as e:
            raise ConfigError(f"config.evals preference path: {e}") from None
        samples = 0
    else:
        documents, samples = embedded_documents(n), options["num_samples"] or n
    return PreferenceEvaluator(model, tokenizer, conditional=config.phf.objective == "conditional",
                               documents=documents, num_samples=samples, batch_size=config.eval.batch_size,
                               seed=config.seed)  # fmt: skip


def language_evaluator(config: ml_collections.ConfigDict, entry: ml_collections.ConfigDict, model, tokenizer):
    """A `language` or `knowledge_conflict` evaluator (evaluation/language_eval.py), PHF's `preference`
    (evaluation/preference_eval.py) or 1.5-Pints' `fact_probe` (evaluation/fact_probe.py)."""
    if entry.type == "knowledge_conflict":
        return KnowledgeConflictEvaluator(model, tokenizer)
    if entry.type == "fact_probe":
        texts = [expository(0, "test", i) for i in range(config.eval.num_examples)]
        return FactProbeEvaluator(model, tokenizer, texts=texts, batch_size=config.eval.batch_size)
    if entry.type == "preference":
        return preference_evaluator(config, entry, model, tokenizer)
    options = eval_types.entry_options(entry)
    n, words = config.eval.num_examples, options["prompt_words"]
    count = options["num_prompts"] or n
    if options["path"]:
        try:
            texts = [r["text"] for r in read_sentences(options["path"])]
        except (OSError, ValueError) as e:
            raise ConfigError(f"config.evals language path: {e}") from None
        prompts = [" ".join(t.split()[:words]) for t in texts[:count]]
        texts = texts[:n]
    else:
        texts = [lm_text.record(0, "test", i)["text"] for i in range(n)]
        prompts = lm_text.prose_prompts(0, count, words)
    return LanguageEvaluator(
        model, tokenizer, config.generation, texts=texts, prompts=prompts, strategies=options["strategies"],
        batch_size=config.eval.batch_size, seed=config.seed,
    )  # fmt: skip


class Evaluators:
    """Every enabled config.evals entry: `evaluate(params)` gives their metrics, each under its prefix."""

    def __init__(self, config: ml_collections.ConfigDict, model, tokenizer: Tokenizer):
        entries = {name: entry for name, entry in config.evals.items() if eval_types.is_enabled(entry)}
        self.evaluators = {
            name: (eval_types.metric_prefix(name, entry), entry.type, build_evaluator(config, name, model, tokenizer))
            for name, entry in entries.items()
        }
        self.off = sorted(set(config.evals) - set(entries))

    def evaluate(self, params) -> dict[str, float]:
        metrics = {}
        for prefix, _, evaluator in self.evaluators.values():
            metrics.update({f"{prefix}{k}": v for k, v in evaluator.evaluate(params).items()})
        return metrics

    def by_entry(self, params) -> dict[str, tuple[str, dict[str, float]]]:
        """{entry name: (type, metrics without the prefix)}."""
        return {name: (kind, e.evaluate(params)) for name, (_, kind, e) in self.evaluators.items()}

    def describe(self, config: ml_collections.ConfigDict) -> str:
        """One sentence: what each evaluator evaluates on, and whether any of it is the training data's."""
        parts = [f"{name} ({kind}): {e.description}" for name, (_, kind, e) in self.evaluators.items()]
        text = "Evaluating " + ("; ".join(parts) if parts else "nothing (config.evals names no enabled evaluator)")
        kinds = {kind for _, kind, _ in self.evaluators.values()}
        files = any(eval_types.entry_options(config.evals[name]).get("path") for name in self.evaluators)
        # (clips: the video evaluator's embedded test clips are all there is; docs/video.md)
        embedded = ("shapes", "shape_commands", "lm_text", "preference_text", *QUALITY_DATASETS, *VIDEO_DATASETS,
                    child_text.CHILD_DATASET, acceptability_text.ACCEPTABILITY_DATASET,
                    icl_tasks.ICL_DATASET, EDIT_DATASET)  # fmt: skip
        if config.data.name not in embedded and not files and "sts" not in kinds:
            held_out = next((n for n in self.off), "heldout")
            text += (f"; none of it is your data ({config.data.name}): name a held-out split with "
                     f"--config.evals.{held_out}.path")  # fmt: skip
        return text + "."
