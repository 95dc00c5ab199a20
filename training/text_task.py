"""Text-only training (SimCSE, MultiCSR, CCP, SPACE-2, CLIMB, PCP and the language models): the source, tokenizer
corpus and transform that the training loop uses in place of the image-text ones when config.data.name is a text
dataset; a method that changes them says how in METHODS (its own source, a wrapper of config.data's, its
transform, the symbols its tokenizer holds).

The model, optimizer, mesh, train step, checkpoints and logging are the image-text ones; the batch has
only token fields ("text", and "positive"/"negative" or "context"/"language" by source), the objective
encodes them with the text tower alone, and the text configs name an `sts` evaluator in config.evals
(STS Spearman on config.eval.sts_files, or on `eval.num_examples` embedded pairs when that is empty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import ml_collections

from configs.errors import ConfigError
from input_pipeline import acceptability_text, child_text, icl_tasks, preference_text, text_sources
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
    """The text source of config.data, or the method's own (METHODS below); for CCP, checks that its languages
    and a batch fit the banks."""
    method = METHODS.get(config.objective, TextMethod())
    if method.source and (own := method.source(config)) is not None:
        return own
    data = config.data
    if data.name in PHF_DATASETS:
        raise ConfigError(
            f"config.data.name={data.name!r} holds PHF's scored sentences, which objective {config.objective!r} does "
            "not read; train on them with configs/phf.py (its `mle` objective is plain language modelling)."
        )
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
    return method.over(config, source) if method.over else source


def _phf_source(config: ml_collections.ConfigDict):
    """PHF's: the misaligned share, threshold and filtering are the method's (config.phf)."""
    data, phf = config.data, config.phf
    filtered = phf.objective == "filtering"
    if data.name == "preference_text":
        return preference_text.PreferenceSource(data.train_size, phf.misaligned_rate, filtered=filtered)
    try:
        return preference_text.ScoredDocumentSource(read_scored_documents(data.path, phf.threshold), filtered)
    except (OSError, ValueError) as e:
        raise ConfigError(f"config.data.path: {e}") from None


def _phf_transform(config: ml_collections.ConfigDict, tokenizer: Tokenizer):
    """Each sentence after its control token (conditional training), or the documents as they are."""
    try:
        preference_text.tag_ids(tokenizer)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    tags = config.phf.objective == "conditional"
    return preference_text.PreferenceTransform(tokenizer, config.model.decoder.max_len + 1, tags)


def _data_curriculum(config: ml_collections.ConfigDict, source):
    """CLIMB's data curriculum over the child-directed corpus (config.climb.data, else the source as it is): each
    step samples the easiest share of its documents by that difficulty, under the run's pacing function
    (losses/climb.py, input_pipeline/curriculum.py)."""
    if config.climb.data == "none":
        return source
    difficulty, pace = child_text.difficulty(source, config.climb.data), schedule(config)
    return CurriculumSource(
        source, difficulty, lambda step: pacing(step, pace), total_steps=config.total_steps,
        global_batch_size=config.batch_size, seed=config.seed,
    )  # fmt: skip


def _pcp_source(config: ml_collections.ConfigDict) -> text_sources.RecordSource | None:
    """PCP's stage data (losses/pcp.py): the seed's labelled judgements in the template (`prompt`), the unlabelled
    pool as raw text (`tapt`) or in the template with each text's pseudo-label word (`pcp`); None for `pretrain`
    (config.data's text)."""
    c = config.pcp
    if c.stage == "pretrain":
        return None
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
    """Control tokens (PHF's) or words (PCP's label words, the in-context tasks' words) the run's own tokenizer
    trains in as single pieces."""
    data = icl_tasks.SYMBOLS if config.data.name == icl_tasks.ICL_DATASET else ()
    return METHODS.get(config.objective, TextMethod()).symbols + data


def make_transform(config: ml_collections.ConfigDict, tokenizer: Tokenizer):
    """The method's transform (METHODS), else token fields of max_len: the text tower's, or for a language model
    (config.model.kind 'decoder') its context plus one (it reads tokens[:-1] and predicts tokens[1:])."""
    method = METHODS.get(config.objective, TextMethod())
    if method.transform and (own := method.transform(config, tokenizer)) is not None:
        return own
    decoder = config.model.kind == "decoder"
    return TextTransform(tokenizer, config.model.decoder.max_len + 1 if decoder else config.model.text.max_len)


class TextMethod(NamedTuple):
    """What one method changes in the text task; each hook returns None (or is None) to keep the default."""

    source: Callable[[ml_collections.ConfigDict], Any] | None = None  # its own source in place of config.data's
    over: Callable[[ml_collections.ConfigDict, Any], Any] | None = None  # config.data's source -> what it reads
    transform: Callable[[ml_collections.ConfigDict, Tokenizer], Any] | None = None
    symbols: tuple[str, ...] = ()  # held as single pieces by a tokenizer trained for the run


def _mend_source(config: ml_collections.ConfigDict) -> text_sources.EmbeddedSource:
    """The in-context tasks with their parts (demonstrations, query, answer) apart."""
    return text_sources.EmbeddedSource(icl_tasks.record, config.data.train_size)


def _mend_transform(config: ml_collections.ConfigDict, tokenizer: Tokenizer) -> icl_tasks.MendTransform:
    m = config.mend
    return icl_tasks.MendTransform(tokenizer, config.model.decoder.max_len, m.distiller.max_len, m.virtual_tokens)


# objective -> its hooks; the other text methods (SimCSE, MultiCSR, CCP, SPACE-2, the language models) read
# config.data's records with TextTransform.
METHODS = {
    "phf": TextMethod(source=_phf_source, transform=_phf_transform, symbols=preference_text.TAGS),
    "climb": TextMethod(
        over=_data_curriculum,  # each piece's word class, for CLIMB's word-class task
        transform=lambda config, tokenizer: TaggedTextTransform(
            tokenizer, config.model.text.max_len, tuple(config.climb.pos_classes)
        ),
    ),
    "mend": TextMethod(source=_mend_source, transform=_mend_transform),
    "pcp": TextMethod(
        source=_pcp_source,
        transform=lambda config, tokenizer: (  # the label slot's position
            acceptability_text.PromptTransform(tokenizer, config.model.text.max_len)
            if config.pcp.stage == "prompt" else None
        ),
        symbols=acceptability_text.VERBALIZER,
    ),
}  # fmt: skip
