"""The binding splits (input_pipeline/binding.py): false captions are false, true ones true (checked by an
independent parser), and scorers that do not see the image stay at chance at the evaluated split size."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from evaluation import binding_eval
from input_pipeline import binding, shapes

N = 500  # images per kind, as the default evaluation (eval.num_examples 1000 // 2)
SIGMAS = 3.5  # |accuracy - 0.5| allowed, in binomial standard deviations at N


def _tolerance(n: int) -> float:
    return SIGMAS * 0.5 / math.sqrt(n)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict]]:
    return {kind: [binding.make_binding_example(0, kind, i, image_size=8) for i in range(N)] for kind in binding.KINDS}


def _parse(caption: str) -> list[dict]:
    """Alt-text 'large red circle top left, blue square' -> [{'size':, 'colour':, 'shape':, 'position':}]."""
    items = []
    for part in caption.split(", "):
        words = part.split(" ")
        item = {}
        if words[0] in shapes.SIZES:
            item["size"] = shapes.SIZES.index(words.pop(0))
        item["colour"] = shapes.COLOURS.index(words.pop(0))
        item["shape"] = shapes.SHAPES.index(words.pop(0))
        if words:
            item["position"] = shapes.POSITIONS.index(" ".join(words))
        items.append(item)
    return items


def _is_true(caption: str, objects) -> bool:
    """Some one-to-one matching of the caption's items to the image's objects agrees on every stated attribute."""
    items = _parse(caption)
    if len(items) != len(objects):
        return False
    return any(
        all(all(getattr(o, k) == v for k, v in item.items()) for item, o in zip(items, order, strict=True))
        for order in itertools.permutations(objects)
    )


def test_true_captions_are_true_and_false_ones_false(splits):
    for kind, examples in splits.items():
        for e in examples:
            assert 2 <= len(e["objects"]) <= 3, (kind, e["caption"])
            assert _is_true(e["caption"], e["objects"]), (kind, e["caption"])
            assert not _is_true(e["false_caption"], e["objects"]), (kind, e["caption"], e["false_caption"])
            assert e["rewrite"] != e["false_rewrite"]
    swapped = splits["attribute"][0]
    again = binding.make_binding_example(0, "attribute", 0, image_size=8)
    assert again["caption"] == swapped["caption"] and np.array_equal(again["image"], swapped["image"])
    # The swaps keep the words: true and false captions are anagrams of each other, in both forms.
    for kind in ("attribute", "spatial", "size"):
        for e in splits[kind]:
            for true, false in binding_eval.FORMS.values():
                assert sorted(_words(e[true])) == sorted(_words(e[false])), (e[true], e[false])


def _words(text: str) -> list[str]:
    return [w.strip(",;") for w in text.split()]


def _pair_accuracy(true_scores: np.ndarray, false_scores: np.ndarray) -> float:
    """Fraction of pairs where the true caption scores higher, ties counting 1/2 (a random tie-break)."""
    return float(np.mean((true_scores > false_scores) + 0.5 * (true_scores == false_scores)))


def test_bag_of_words_with_the_image_description_cannot_tell_true_from_false(splits):
    for kind, examples in splits.items():
        for true, false in binding_eval.FORMS.values():
            scores = []
            for e in examples:
                seen = set(shapes._alt_text(e["objects"], shapes.Mentions()).replace(",", "").split())
                # the fraction of the caption's words that describe the image
                scores.append([np.mean([w in seen for w in _words(e[f])]) for f in (true, false)])
            scores = np.array(scores)
            if true == "caption":  # the same words (a count changes only how often): every pair ties
                assert np.all(scores[:, 0] == scores[:, 1]), kind
            assert abs(_pair_accuracy(scores[:, 0], scores[:, 1]) - 0.5) <= _tolerance(N), (kind, true)


def test_a_trained_text_only_classifier_is_at_chance(splits):
    """Logistic regression on word unigram and bigram counts, trained to tell true from false captions without
    the image, scored by 5-fold cross-validation over pairs (both captions of a pair in one fold): it would
    learn any word, word pair, first or last word, or caption length that false captions have more often."""
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    folds = np.arange(N) % 5
    for kind, examples in splits.items():
        for true, false in binding_eval.FORMS.values():
            texts = [f"^ {e[f]} $" for e in examples for f in (true, false)]  # bigrams see the first and last word
            features = CountVectorizer(ngram_range=(1, 2), token_pattern=r"[^ ,;]+").fit_transform(texts)
            labels = np.tile([1, 0], N)
            true_p, false_p = np.zeros(N), np.zeros(N)
            for fold in range(5):
                rows = np.repeat(folds == fold, 2)
                classifier = LogisticRegression(solver="liblinear").fit(features[~rows], labels[~rows])
                p = classifier.predict_proba(features[rows])[:, 1]
                true_p[folds == fold], false_p[folds == fold] = p[0::2], p[1::2]
            assert abs(_pair_accuracy(true_p, false_p) - 0.5) <= _tolerance(N), (kind, true)


def test_binding_accuracy_counts_ties_as_failures_and_scores_a_blind_control():
    # Kind k's image 0 prefers its true caption, image 1 ties (a failure); 4 kinds, 2 images, D = 2.
    images = np.tile(np.array([[1.0, 0.0], [0.0, 1.0]]), (4, 1, 1))
    texts = np.zeros((4, 2, 2, 2))
    texts[:, 0, 0], texts[:, 0, 1] = [1.0, 0.0], [0.0, 1.0]  # image 0: true 1.0, false 0.0
    texts[:, 1, 0], texts[:, 1, 1] = [1.0, 1.0], [1.0, 1.0]  # image 1: 1.0 vs 1.0
    metrics = binding_eval.binding_accuracy(images, {"binding/": texts})
    assert {k: metrics[f"binding/{k}"] for k in binding.KINDS} == dict.fromkeys(binding.KINDS, 0.5)
    assert metrics["binding/mean"] == 0.5
    # The mean image (0.5, 0.5) scores image 0's captions 0.5 vs 0.5 and image 1's 1.0 vs 1.0: all ties.
    assert metrics["binding/image_blind"] == 0.0


def test_a_text_tower_against_the_mean_image_is_at_chance(splits):
    """`image_blind` of a (random) text tower with position embeddings: it sees word order and length."""
    import jax

    from input_pipeline.tokenizer import train_tokenizer
    from models.two_tower import build_model
    from tests.tiny_training import tiny_config
    from training.partitioning import FAST_COMPILE

    config = tiny_config()
    config.model.text.max_len = 32
    examples = [e for kind in binding.KINDS for e in splits[kind]]
    texts = {p: [e[f] for e in examples for f in fields] for p, fields in binding_eval.FORMS.items()}
    tokenizer = train_tokenizer([t for form in texts.values() for t in form], 512)
    model = build_model(config, tokenizer.vocab_size)
    images = np.zeros((1, 16, 16, 3), np.float32)
    args = (jax.random.PRNGKey(0), images, tokenizer.encode(["a"], 32))
    params = jax.jit(model.init).lower(*args).compile(FAST_COMPILE)(*args)["params"]  # LLVM -O0: compiles 2x faster
    encode = jax.jit(lambda t: model.apply({"params": params}, t, method=model.encode_text)["text_embedding"])
    image = jax.jit(lambda x: model.apply({"params": params}, x, method=model.encode_image)["image_embedding"])
    pictures = np.stack([e["image"] for e in examples]).repeat(2, axis=1).repeat(2, axis=2)  # 8 px -> 16 px
    image_embeddings = np.asarray(image(pictures.astype(np.float32) / 255)).reshape(len(binding.KINDS), N, -1)
    embeddings = {p: np.asarray(encode(tokenizer.encode(t, 32))).reshape(len(binding.KINDS), N, 2, -1)
                  for p, t in texts.items()}  # fmt: skip
    metrics = binding_eval.binding_accuracy(image_embeddings, embeddings)
    for prefix in binding_eval.FORMS:  # the mean over 4 kinds of N pairs each
        assert abs(metrics[f"{prefix}image_blind"] - 0.5) <= _tolerance(len(binding.KINDS) * N), metrics
