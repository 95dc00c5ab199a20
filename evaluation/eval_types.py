"""The evaluators a config can name in config.evals (as big_vision's `config.evals`), what their options mean,
and the check of config.evals that runs before jax starts.

config.evals holds named entries, each a ConfigDict with a `type` and that type's options (the table of options
and defaults is configs/evaluators.py's EVAL_TYPES, re-exported here; its `evaluator` builds entries):
- `shapes_zero_shot`: zero-shot, retrieval, compositionality and embedding geometry on the embedded shapes
  test images (evaluation/shapes_eval.py);
- `retrieval`: image <-> text R@1/5/10 on the first config.eval.num_examples usable examples of a held-out
  split of your data: `path` in the format `data` ('' = config.data.name; a WebDataset shard pattern,
  ArrayRecord files, a CSV/JSONL file, a TFDS data dir with `split`); `path` '' turns the entry off;
- `sts`: STS Spearman of the text tower on config.eval.sts_files, or the embedded graded pairs;
- `dialog`: intent and slot probes on the text tower's embeddings of held-out embedded commands, or with `path` of
  the labelled lines of your held-out JSON Lines (evaluation/dialog_eval.py; SPACE-2);
- `second_language_retrieval`: uCLIP's measure, retrieval from English and second-language captions
  (evaluation/second_language.py);
- `proclip_text`: retrieval through ProCLIP's text path next to the text tower's (evaluation/proclip.py);
- `regions`: region classification and caption grounding on held-out multi-object shapes images, the
  prompter-free RoI baseline and chance beside (evaluation/region_eval.py; CLOC);
- `segmentation`: mIoU on the masks of held-out shapes images, or with `path` (and `data`, as `retrieval`'s) on
  the first config.eval.num_examples usable examples of a held-out split of your files with masks beside the
  images (a DenseCLIP run's; input_pipeline/masks.py): DenseCLIP's head and score map, the plain CLIP patch-token
  baseline, chance (evaluation/segmentation_eval.py).
- `video`: zero-shot motion and appearance classification and video-text retrieval on held-out shapes_video
  clips of `frames` frames (0 = config.model.video_frames), the mean of frame embeddings and chance beside
  (evaluation/video_eval.py; X-CLIP).
- `language` (language models, config.model.kind 'decoder'): per-token loss and perplexity on held-out text
  (`path`: a .txt or JSON Lines file; '' = the embedded `lm_text` test split) and, for each of `strategies`,
  rep-2/3/4, diversity, coherence and length of continuations of `num_prompts` prompts (0 = eval.num_examples):
  the first `prompt_words` words of held-out texts (evaluation/language_eval.py);
- `knowledge_conflict` (language models): context-answer accuracy of greedy, CAD and AdaCAD on questions whose
  context agrees with or contradicts the embedded facts (evaluation/language_eval.py).
- `preference` (a PHF run's language model): the undesirable word's rate in `num_samples` samples (0 =
  config.eval.num_examples) and after prompts that lead to it, and the loss on held-out aligned and misaligned
  text, or (`path`) the losses alone on your held-out scored JSON Lines (evaluation/preference_eval.py).
- `fact_probe` (a 1.5-Pints run's language model): accuracy and mean log-probability of the world's value of each
  memorised fact after its statement's prompt, and the loss on config.eval.num_examples held-out expository
  documents (evaluation/fact_probe.py).
- `minimal_pairs` (a CLIMB run's masked language model): % of `per_phenomenon` BLiMP-style pairs of each
  phenomenon of the embedded child-directed grammar whose grammatical sentence has the higher pseudo-log-likelihood,
  and the pseudo-perplexity of config.eval.num_examples held-out documents (evaluation/minimal_pairs.py).
- `prompt_accuracy` (a PCP run's masked language model): % of config.eval.num_examples held-out grammaticality
  judgements whose label word the head puts first at the prompt template's masked slot, overall and by phenomenon
  (evaluation/prompt_eval.py).
- `class_incremental` (a COCONUT run's classifier): % of the held-out shapes test images of the classes seen so far
  classified right among them, overall, per experience and over the earlier experiences
  (evaluation/incremental_eval.py).
- `in_context` (a language model trained on `icl_tasks`, or a MEND run): % of held-out in-context tasks answered
  from the demonstrations, from MEND's k distilled vectors, and from nothing, and the tokens the language model
  reads for each (evaluation/in_context_eval.py).
- `captioning` (captioners, config.model.kind 'captioner': LiMBeR, CLOSE): captions generated for held-out shapes
  images from the frozen CLIP run's image embeddings; colour and shape words right, CLIP-S, and the same from the
  captions' text embeddings; chance and the modality gap beside (evaluation/captioning_eval.py).
- `edits` (SuperEdit's editing denoiser, config.model.kind 'denoiser'): held-out shapes edits sampled by DDIM
  (`sample_steps`; `text_guidance`, classifier-free guidance on the instruction, 1 = none) and scored by the
  pixels the edit changes; the same with a wrong instruction; the share of held-out pairs whose wrong instruction
  predicts the noise worse (evaluation/edit_eval.py).
Every entry's metrics are logged as eval/<prefix><metric>; `prefix` defaults to '<entry name>/' and the
built-in entries set it to '' so their metrics keep the names the summary and the README tables read.
"""

from __future__ import annotations

import os

import ml_collections

from configs.common import REAL_DATASETS
from configs.errors import ConfigError
from configs.evaluators import EVAL_TYPES, NAME_PREFIX
from input_pipeline.icl_tasks import ICL_DATASET
from input_pipeline.masks import MASK_DATASETS
from input_pipeline.segmentation import CLASS_SETS, shapes_class_table
from models.generation import STRATEGIES

# the evaluators a text-only run (training/text_task.py) runs
TEXT_ONLY_TYPES = ("sts", "dialog", "minimal_pairs", "prompt_accuracy")
# the evaluators of a decoder language model
LANGUAGE_TYPES = ("language", "knowledge_conflict", "preference", "fact_probe")
CAPTION_TYPES = ("captioning",)  # the evaluator of a captioner (LiMBeR, CLOSE)
# evaluator type -> the config.model.kinds it scores; every other type scores the two-tower model.
MODEL_KINDS = {
    **dict.fromkeys(LANGUAGE_TYPES, ("decoder",)), **dict.fromkeys(CAPTION_TYPES, ("captioner",)),
    "in_context": ("decoder", "mend"), "edits": ("denoiser",),
}  # fmt: skip


def entry_options(entry: ml_collections.ConfigDict) -> dict:
    """The entry's options with the defaults of its type filled in (`type` and `prefix` included)."""
    return {"prefix": NAME_PREFIX, **EVAL_TYPES[entry.type], **entry.to_dict()}


def metric_prefix(name: str, entry: ml_collections.ConfigDict) -> str:
    return entry_options(entry)["prefix"].replace("{name}", name)


def is_enabled(entry: ml_collections.ConfigDict) -> bool:
    """False for a `retrieval` entry without a path (off until you name your held-out data)."""
    return entry.type != "retrieval" or bool(entry.get("path", ""))


def held_out_data(config: ml_collections.ConfigDict, entry: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.data with the name, path (and TFDS split) of a retrieval or segmentation entry's held-out split."""
    options = entry_options(entry)
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.name = options["data"] or config.data.name
    data.path = options["path"]
    data.tfds_split = options.get("split", data.tfds_split)
    return data


def video_frames(config: ml_collections.ConfigDict, entry: ml_collections.ConfigDict) -> int:
    """The frames per clip of a `video` entry: its own `frames`, else the model's."""
    return entry_options(entry)["frames"] or config.model.video_frames


def validate_evals(config: ml_collections.ConfigDict, text_only: bool) -> None:
    """Raises ConfigError, one sentence naming the key and the fix, for an unknown evaluator type or option,
    an option of the wrong type, or an evaluator the run cannot feed."""
    evals = config.get("evals")
    if not isinstance(evals, ml_collections.ConfigDict):
        raise ConfigError("config.evals must be a ConfigDict of named evaluators, e.g. configs/common.py's.")
    for name, entry in evals.items():
        key = f"config.evals.{name}"
        if not isinstance(entry, ml_collections.ConfigDict) or not isinstance(entry.get("type"), str):
            raise ConfigError(f"{key} must be a ConfigDict with a `type`, one of {sorted(EVAL_TYPES)}.")
        if entry.type not in EVAL_TYPES:
            raise ConfigError(f"Unknown evaluator type {entry.type!r} in {key}.type; use one of {sorted(EVAL_TYPES)}.")
        defaults = {"prefix": NAME_PREFIX, **EVAL_TYPES[entry.type]}
        for option, value in entry.items():
            if option == "type":
                continue
            if option not in defaults:
                raise ConfigError(
                    f"{key}.{option} is not an option of the {entry.type} evaluator; use one of {sorted(defaults)}."
                )
            if not isinstance(value, type(defaults[option])):
                raise ConfigError(f"{key}.{option} must be a {type(defaults[option]).__name__}, not {value!r}.")
        scores = MODEL_KINDS.get(entry.type, ("two_tower",))
        if config.model.kind not in scores:
            usable = sorted(t for t in EVAL_TYPES if config.model.kind in MODEL_KINDS.get(t, ("two_tower",)))
            raise ConfigError(
                f"{key} ({entry.type}) scores a {' or '.join(scores)} model, but this run trains a "
                f"{config.model.kind}; use one of {usable} or remove it from config.evals."
            )
        if entry.type == "in_context" and config.data.name != ICL_DATASET:
            raise ConfigError(
                f"{key} (in_context) scores held-out tasks of the embedded {ICL_DATASET!r} data, which this run "
                f"does not train on ({config.data.name}); use it with configs/mend.py, or remove it from config.evals."
            )
        if entry.type == "language":
            _check_language_entry(config, key, entry)
        elif entry.type == "dialog":
            _check_dialog_entry(config, key, entry)
        elif text_only and entry.type not in (*TEXT_ONLY_TYPES, *LANGUAGE_TYPES, "in_context"):
            raise ConfigError(
                f"{key} ({entry.type}) scores images, but config.data.name={config.data.name!r} trains the text "
                f"tower alone; remove it from config.evals or use one of {list(TEXT_ONLY_TYPES)}."
            )
        if entry.type == "minimal_pairs" and config.objective != "climb":
            raise ConfigError(
                f"{key} (minimal_pairs) scores a masked language model's head, which only CLIMB's runs train; use it "
                "with configs/climb.py, or remove it from config.evals."
            )
        if entry.type == "prompt_accuracy" and config.objective != "pcp":
            raise ConfigError(
                f"{key} (prompt_accuracy) reads a masked language model's head at a prompt's slot, which only PCP's "
                "runs train for it; use it with configs/pcp.py, or remove it from config.evals."
            )
        if entry.type == "class_incremental" and config.objective != "coconut":
            raise ConfigError(
                f"{key} (class_incremental) scores COCONUT's classifier over the classes seen so far; use it with "
                "configs/coconut.py, or remove it from config.evals."
            )
        if entry.type == "minimal_pairs" and entry.per_phenomenon < 1:
            raise ConfigError(f"{key}.per_phenomenon must be at least 1, not {entry.per_phenomenon}.")
        if entry.type == "preference" and config.get("phf") is None:
            raise ConfigError(
                f"{key} (preference) scores a PHF run's control tokens and undesirable word; use it with "
                "configs/phf.py, or remove it from config.evals."
            )
        if entry.type == "preference":
            _check_preference_entry(config, key, entry)
        if entry.type == "video" and video_frames(config, entry) < 1:
            raise ConfigError(
                f"{key} needs clips of at least one frame; set {key}.frames, or config.model.video_frames (X-CLIP)."
            )
        if entry.type == "retrieval" and is_enabled(entry):
            data = held_out_data(config, entry).name
            if data not in REAL_DATASETS:
                raise ConfigError(
                    f"{key}.data is {data!r}, which has no held-out files to read; set {key}.data to the format of "
                    f"{key}.path, one of {list(REAL_DATASETS)}."
                )
        if entry.type == "segmentation":
            _check_segmentation(config, key, entry)


def _check_language_entry(config: ml_collections.ConfigDict, key: str, entry: ml_collections.ConfigDict) -> None:
    options = entry_options(entry)
    unknown = [s for s in options["strategies"] if s not in STRATEGIES]
    if unknown:
        raise ConfigError(f"{key}.strategies names {unknown[0]!r}; use decoding strategies of {list(STRATEGIES)}.")
    if options["num_prompts"] < 0 or options["prompt_words"] < 1:
        raise ConfigError(f"{key}.num_prompts must be >= 0 (0 = config.eval.num_examples) and {key}.prompt_words >= 1.")
    if not options["path"] and config.data.name != "lm_text":
        raise ConfigError(
            f"{key}.path is '', which means the embedded lm_text test split, but this run trains on your text "
            f"({config.data.name}); set {key}.path to a held-out .txt or .jsonl file."
        )
    if options["path"] and not os.path.isfile(options["path"]):
        raise ConfigError(f"{key}.path {options['path']!r} is not a file; point it at held-out text (.txt or .jsonl).")


def _check_preference_entry(config: ml_collections.ConfigDict, key: str, entry: ml_collections.ConfigDict) -> None:
    options = entry_options(entry)
    if options["num_samples"] < 0:
        raise ConfigError(f"{key}.num_samples must be >= 0 (0 = config.eval.num_examples).")
    if not options["path"] and config.data.name == "scored_documents":
        raise ConfigError(
            f"{key}.path is '', which means the embedded held-out documents, but this run trains on your scored "
            f"documents; set {key}.path to a held-out JSON Lines file of the same form."
        )
    if options["path"] and not os.path.isfile(options["path"]):
        raise ConfigError(f"{key}.path {options['path']!r} is not a file; point it at held-out scored JSON Lines.")


def _check_dialog_entry(config: ml_collections.ConfigDict, key: str, entry: ml_collections.ConfigDict) -> None:
    path = entry_options(entry)["path"]
    if not path and config.data.name == "dialogs":
        raise ConfigError(
            f"{key}.path is '', which means the embedded commands, but this run trains on your dialogs; set {key}.path "
            "to held-out JSON Lines with labelled lines (input_pipeline/dialog_files.py)."
        )
    if path and not os.path.isfile(path):
        raise ConfigError(f"{key}.path {path!r} is not a file; point it at held-out dialog JSON Lines.")


def _check_segmentation(config: ml_collections.ConfigDict, key: str, entry: ml_collections.ConfigDict) -> None:
    """Shapes masks need class names they can label; masks of your files need a DenseCLIP run and a mask format."""
    if not entry_options(entry)["path"]:
        try:
            shapes_class_table(tuple(config.denseclip.class_names) if "denseclip" in config else CLASS_SETS["shape"])
        except ValueError:
            raise ConfigError(
                f"{key} scores the shapes masks, which config.denseclip.class_names cannot label; set {key}.path to "
                "a held-out split of your images with their masks (docs/evaluation.md)."
            ) from None
        return
    if config.objective != "denseclip":
        raise ConfigError(
            f"{key}.path names masks whose classes only a DenseCLIP run names (config.denseclip.class_names); train "
            f"with configs/denseclip.py or set {key}.path=''."
        )
    data = held_out_data(config, entry).name
    if data not in MASK_DATASETS:
        raise ConfigError(
            f"{key}.data is {data!r}, which holds no masks; set {key}.data to the format of {key}.path, one of "
            f"{list(MASK_DATASETS)}."
        )
