"""Text-only data: the embedded sentences, file sources, STS file formats and the text transform."""

import collections
import json
import re

import ml_collections
import numpy as np
import pytest
from scipy.stats import spearmanr

from configs.errors import ConfigError
from evaluation import sts_data
from evaluation.evaluators import sts_sets
from input_pipeline import sentences, shapes, text_sources
from input_pipeline.text_transform import TextTransform
from input_pipeline.tokenizer import train_tokenizer
from training import text_task

# Canonical attribute word of every surface form the sentences use (multi-word synonyms first).
_CANONICAL = sorted(
    [(w, w) for w in shapes.SHAPES + shapes.COLOURS + shapes.SIZES]
    + [(s, w) for w, synonyms in shapes._SYNONYMS.items() for s in synonyms],
    key=lambda pair: -len(pair[0]),
)


def _attribute_words(sentence: str) -> list[str]:
    """The canonical shape, colour and size words a sentence states, in order (positions ignored)."""
    found = []
    for surface, canonical in _CANONICAL:
        for match in re.finditer(rf"\b{re.escape(surface)}\b", sentence):
            found.append((match.start(), canonical))
            sentence = sentence[: match.start()] + "#" * len(surface) + sentence[match.end() :]
    return [canonical for _, canonical in sorted(found)]


def test_sts_gold_scores_follow_the_stated_attributes():
    """An oracle reading the attribute words back (independently of the generator) agrees with the gold."""
    first, second, gold = sentences.sts_set(seed=3, size=300)
    assert gold.min() == 0.0 and gold.max() == 5.0
    overlap = []
    for a, b in zip(first, second, strict=True):
        words_a, words_b = _attribute_words(a), _attribute_words(b)
        assert len(words_a) == len(words_b) in (3, 6)  # size, colour, shape per object
        shared = collections.Counter(words_a) & collections.Counter(words_b)
        overlap.append(sum(shared.values()) / len(words_a))
    assert spearmanr(overlap, gold).statistic > 0.7


def test_triples_state_the_same_scene_and_a_one_attribute_change():
    for index in range(50):
        t = sentences.triple(0, "train", index)
        anchor, positive, negative = (_attribute_words(t[k]) for k in ("text", "positive", "negative"))
        assert sorted(anchor) == sorted(positive)
        # One attribute word differs, or none when the change was a position.
        assert sum((collections.Counter(anchor) - collections.Counter(negative)).values()) <= 1
    assert sentences.triple(0, "train", 7) == sentences.triple(0, "train", 7)
    assert sentences.triple(0, "train", 7) != sentences.triple(0, "train", 8)


def test_documents_and_their_second_language():
    assert sentences.translate("a red circle, at the top", "xx") == "aa dera elcrica , taa ehta pota"
    language, lines = sentences.document(0, 5)
    assert language in sentences.LANGUAGES and 4 <= len(lines) <= 8


def test_context_windows():
    source = text_sources.ContextWindowSource([(0, ["a", "b", "c", "d"]), (1, ["e", "f"])], window=2)
    assert len(source) == 6
    assert source[0] == {"text": "a", "context": ("b", "c"), "language": 0}
    assert source[3] == {"text": "d", "context": ("b", "c"), "language": 0}
    assert source[5] == {"text": "f", "context": ("e",), "language": 1}


def test_sentence_triple_and_document_files(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("first one\n\n  second one \n")
    assert text_sources.read_sentences(str(path)) == [{"text": "first one"}, {"text": "second one"}]
    csv_path = tmp_path / "nli.csv"
    csv_path.write_text('sent0,sent1,hard_neg\n"a, b",c,d\ne,,f\ng,h,i\n')
    assert text_sources.read_triples(str(csv_path)) == [
        {"text": "a, b", "positive": "c", "negative": "d"},
        {"text": "g", "positive": "h", "negative": "i"},
    ]  # the row with an empty entailment is skipped
    jsonl = tmp_path / "nli.jsonl"
    jsonl.write_text('{"premise": "p", "entailment": "e"}\nnot json\n{"premise": "q", "entailment": "f"}\n')
    assert text_sources.read_triples(str(jsonl)) == [{"text": "p", "positive": "e"}, {"text": "q", "positive": "f"}]
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    with pytest.raises(ValueError, match="sent0,sent1"):
        text_sources.read_triples(str(bad))
    docs = tmp_path / "docs.jsonl"
    rows = [{"sentences": ["a", "b"], "language": "de"}, {"sentences": ["c"]}, {"sentences": ["d", "e", "f"]}]
    docs.write_text("\n".join(json.dumps(r) for r in rows))
    documents, skipped = text_sources.read_documents(str(docs))
    assert documents == [("de", ["a", "b"]), ("und", ["d", "e", "f"])]
    assert skipped["document of fewer than 2 sentences"] == 1
    source, languages = text_sources.document_source(documents, window=1)
    assert languages == ["de", "und"] and source[2] == {"text": "d", "context": ("e",), "language": 1}
    plain = tmp_path / "docs.txt"
    plain.write_text("a\nb\n\nc\nd\n")
    assert text_sources.read_documents(str(plain))[0] == [("und", ["a", "b"]), ("und", ["c", "d"])]


def test_text_transform_tokenizes_draws_and_keeps_ids():
    tokenizer = train_tokenizer([sentences.triple(0, "train", i)["text"] for i in range(200)], 400)
    transform = TextTransform(tokenizer, 12)
    out = transform.random_map({"text": "a red circle", "context": ("a", "b"), "language": 1}, np.random.default_rng(0))
    np.testing.assert_array_equal(out["text"], tokenizer.encode(["a red circle"], 12)[0])
    assert out["context"].tolist() in [tokenizer.encode([c], 12)[0].tolist() for c in ("a", "b")]
    assert out["language"] == 1 and out["language"].dtype == np.int32


def test_sts_file_formats(tmp_path):
    folder = tmp_path / "STS12-en-test"
    folder.mkdir()
    (folder / "STS.input.MSRpar.txt").write_text("a b\tc d\ne f\tg h\n")
    (folder / "STS.gs.MSRpar.txt").write_text("4.0\n\n")  # an unscored pair is skipped
    (folder / "STS.input.SMT.txt").write_text("i\tj\nk\tl\n")
    (folder / "STS.gs.SMT.txt").write_text("1\n2.5\n")
    got = sts_data.load_sts(str(folder))["STS12-en-test"]
    assert got.first == ["a b", "i", "k"] and got.second == ["c d", "j", "l"]
    np.testing.assert_allclose(got.scores, [4.0, 1.0, 2.5])
    stsb = tmp_path / "sts-test.csv"
    stsb.write_text('main-news\tx\t2012\t1\t3.2\tA "quoted" one\tB\nmain-news\tx\t2012\t2\t0.5\tC\tD\textra\n')
    got = sts_data.load_sts(str(stsb))["sts-test"]
    assert got.first == ['A "quoted" one', "C"] and list(got.scores) == pytest.approx([3.2, 0.5])
    sick = tmp_path / "SICK.txt"
    sick.write_text(
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tSemEval_set\n1\ta\tb\t4.5\tTEST\n2\tc\td\t1\tTRAIN\n"
        "3\te\tf\t2\tTEST\n"
    )
    assert sts_data.load_sts(str(sick))["SICK"].first == ["a", "e"]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "c", "sentence2": "d", "score": 2}\n'
    )
    assert list(sts_data.load_sts(str(jsonl))["pairs"].scores) == [1.0, 2.0]
    with pytest.raises(ValueError, match="sts_files"):
        sts_data.load_sts(str(tmp_path / "missing.tsv"))


def test_text_task_factories(tmp_path):
    config = ml_collections.ConfigDict(
        {
            "objective": "ccp",
            "batch_size": 8,
            "data": {"name": "documents", "path": str(tmp_path / "none.jsonl"), "train_size": 10, "context_window": 1},
            "ccp": {"num_languages": 1, "queue_size": 8},
            "eval": {"sts_files": (), "num_examples": 20},
        }
    )
    with pytest.raises(ConfigError, match="data.path"):
        text_task.make_source(config)
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"sentences": ["a", "b"], "language": "en"}\n{"sentences": ["c", "d"], "language": "fr"}\n')
    config.data.path = str(docs)
    with pytest.raises(ConfigError, match="num_languages"):
        text_task.make_source(config)
    config.ccp.num_languages = 2
    assert len(text_task.make_source(config)) == 4
    sets = sts_sets(config)
    assert list(sets) == ["shapes_sts"] and len(sets["shapes_sts"].first) == 20
