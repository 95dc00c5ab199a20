"""Text-only training (SimCSE, MultiCSR, CCP): the source, tokenizer corpus and transform that the
training loop uses in place of the image-text ones when config.data.name is a text dataset.

The model, optimizer, mesh, train step, checkpoints and logging are the image-text ones; the batch has
only token fields ("text", and "positive"/"negative" or "context"/"language" by source), the objective
encodes them with the text tower alone, and the text configs name an `sts` evaluator in config.evals
(STS Spearman on config.eval.sts_files, or on `eval.num_examples` embedded pairs when that is empty).
"""

from __future__ import annotations

from collections.abc import Iterator

import ml_collections

from configs.errors import ConfigError
from input_pipeline import acceptability_text, child_text, preference_text, text_sources
from input_pipeline.curriculum import CurriculumSource
from input_pipeline.preference_files import read_scored_documents
from input_pipeline.preference_text import PHF_DATASETS
from input_pipeline.text_transform import TaggedTextTransform, TextTransform
from input_pipeline.tokenizer import Tokenizer
from losses.climb import schedule
from losses.pacing import pacing
from training.pseudo_labels import pseudo_labelled_pool


def is_text_data(config: ml_collections.ConfigDict) -> bool:
    return config.data.name in text_sources.TEXT_DATASETS


def make_source(config: ml_collections.ConfigDict):
    """The text source of config.data; for CCP, checks that its languages and a batch fit the banks."""
    data = config.data
    if data.name in PHF_DATASETS:  # PHF: the misaligned share, threshold and filtering are the method's (config.phf)
        phf = config.phf
        filtered = phf.objective == "filtering"
        if data.name == "preference_text":
            return preference_text.PreferenceSource(data.train_size, phf.misaligned_rate, filtered=filtered)
        try:
            return preference_text.ScoredDocumentSource(read_scored_documents(data.path, phf.threshold), filtered)
        except (OSError, ValueError) as e:
            raise ConfigError(f"config.data.path: {e}") from None
    if config.objective == "pcp" and config.pcp.stage != "pretrain":
        return _pcp_source(config)
    try:
        space2 = config.get("space2", {})
        source, languages = text_sources.make_text_source(
            data.name, path=data.path, size=data.train_size, window=data.context_window,
            views=tuple(space2.get("views", ())), labelled_fraction=space2.get("labelled_fraction", 0.1),
        )  # fmt: skip
    except (OSError, ValueError) as e:
        raise ConfigError(str(e)) from None
    _check_objective_fits_data(config)
    if config.objective == "ccp" and len(languages) > config.ccp.num_languages:
        raise ConfigError(
            f"The documents hold {len(languages)} languages ({', '.join(languages)}) but config.ccp.num_languages "
            f"is {config.ccp.num_languages}; raise it to {len(languages)}."
        )
    if config.objective == "ccp" and config.ccp.queue_size < config.batch_size:
        raise ConfigError(
            f"config.ccp.queue_size ({config.ccp.queue_size}) must be at least config.batch_size "
            f"({config.batch_size}) so one batch never overwrites itself in the bank; raise it."
        )
    if config.objective == "climb" and config.climb.data != "none":
        return _data_curriculum(config, source)
    return source


def _data_curriculum(config: ml_collections.ConfigDict, source) -> CurriculumSource:
    """CLIMB's data curriculum over the child-directed corpus: each step samples the easiest share of its documents
    by config.climb.data's difficulty, under the run's pacing function (losses/climb.py,
    input_pipeline/curriculum.py)."""
    difficulty, pace = child_text.difficulty(source, config.climb.data), schedule(config)
    return CurriculumSource(
        source, difficulty, lambda step: pacing(step, pace), total_steps=config.total_steps,
        global_batch_size=config.batch_size, seed=config.seed,
    )  # fmt: skip


def _pcp_source(config: ml_collections.ConfigDict) -> text_sources.RecordSource:
    """PCP's stage data (losses/pcp.py): the seed's few labelled judgements in the template (`prompt`), the unlabelled
    pool as raw text (`tapt`) or in the template with each text's pseudo-label word (`pcp`)."""
    c = config.pcp
    if c.stage == "prompt":
        records = [
            acceptability_text.prompt_record(r, r["label"]) for r in acceptability_text.labelled(config.seed, c.shots)
        ]
    elif c.stage == "tapt":
        records = [{"text": acceptability_text.raw_text(r)} for r in acceptability_text.pool(c.unlabelled_size)]
    else:
        pool, labels, _ = pseudo_labelled_pool(config)
        records = [{"text": acceptability_text.prompt_record(r, y)["text"]} for r, y in zip(pool, labels, strict=True)]
    return text_sources.RecordSource(records)


# Text datasets whose records carry the fields each objective reads.
_DATA_FOR = {
    "sup": ("shape_sentences", "nli"),
    "ccp": ("shape_documents", "documents"),
}


def _check_objective_fits_data(config: ml_collections.ConfigDict) -> None:
    """The method's fields exist in the data, and MultiCSR has a frozen encoder to start from."""
    objective, name = config.objective, config.data.name
    need = "ccp" if objective == "ccp" else config[objective].mode if objective in ("simcse", "multicsr") else None
    if need in _DATA_FOR and name not in _DATA_FOR[need]:
        raise ConfigError(
            f"config.objective={objective!r} ({need}) cannot train on config.data.name={name!r}; "
            f"use one of {list(_DATA_FOR[need])}."
        )
    if objective == "multicsr" and not config.init_from.workdir:
        raise ConfigError(
            "MultiCSR masks false negatives with a trained frozen encoder; set config.init_from.workdir to an "
            "unsupervised SimCSE run."
        )


def corpus(source) -> Iterator[str]:
    """The tokenizer's training texts: the source's own `tokenizer_corpus()` where a method defines one (PHF's: the
    unfiltered documents with their control tokens; 1.5-Pints': both corpora), so that every arm of the method
    trains one tokenizer and their per-token losses compare; else the source's texts."""
    own = getattr(source, "tokenizer_corpus", None)
    return own() if own else text_sources.texts(source)


def tokenizer_symbols(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Control tokens (PHF's) or words (PCP's label words) the run's own tokenizer trains in as single pieces."""
    if config.objective == "pcp":
        return acceptability_text.VERBALIZER
    return preference_text.TAGS if config.data.name in PHF_DATASETS else ()


def make_transform(config: ml_collections.ConfigDict, tokenizer: Tokenizer):
    """Token fields of max_len: the text tower's, or for a language model (config.model.kind 'decoder') its
    context plus one (it reads tokens[:-1] and predicts tokens[1:])."""
    decoder = config.model.kind == "decoder"
    if config.data.name in PHF_DATASETS:
        try:
            preference_text.tag_ids(tokenizer)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        tags = config.phf.objective == "conditional"
        return preference_text.PreferenceTransform(tokenizer, config.model.decoder.max_len + 1, tags)
    if config.objective == "pcp" and config.pcp.stage == "prompt":  # the label slot's position
        return acceptability_text.PromptTransform(tokenizer, config.model.text.max_len)
    if config.objective == "climb":  # each piece's word class, for CLIMB's word-class task
        return TaggedTextTransform(tokenizer, config.model.text.max_len, tuple(config.climb.pos_classes))
    return TextTransform(tokenizer, config.model.decoder.max_len + 1 if decoder else config.model.text.max_len)
