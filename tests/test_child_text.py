"""CLIMB's embedded corpus (METHODS.md §26, input_pipeline/child_text.py): tags one per word and right by
construction, number agreement in every sentence, the register mix and difficulty, word tags carried to tokenizer
pieces, minimal pairs the grammar makes and breaks; the `minimal_pairs` evaluator against a NumPy loop."""

from __future__ import annotations

import collections
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from evaluation.minimal_pairs import MinimalPairsEvaluator
from input_pipeline import child_text, text_sources
from input_pipeline.child_text import ANIMALS, COLOURS, POS_TAGS, SIZES, THINGS
from input_pipeline.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer

NOUNS = ANIMALS + THINGS
SINGULAR, PLURAL = {s for s, _ in NOUNS}, {p for _, p in NOUNS}
VERBS = child_text.ANIMAL_VERBS + child_text.THING_VERBS + child_text.TRANSITIVE_VERBS
VERB_SINGULAR, VERB_PLURAL = {"is"} | {v[1] for v in VERBS}, {"are"} | {v[0] for v in VERBS}
DEMONSTRATIVES = ("this", "that", "these", "those")  # DET before a noun phrase, PRON alone
# Hand-checked tags of words with one part of speech.
LEXICON = {
    "look": "VERB", "at": "ADP", "where": "ADV", "what": "PRON", "can": "AUX", "do": "AUX", "you": "PRON",
    "me": "PRON", "it": "PRON", "they": "PRON", "the": "DET", "a": "DET", "an": "DET", "and": "CCONJ",
    "but": "CCONJ", "very": "ADV", "then": "ADV", "here": "ADV", "near": "ADP", "yes": "INTJ", "job": "NOUN",
    "good": "ADJ", "jumping": "VERB", "has": "VERB", "have": "VERB", "is": "AUX", "are": "AUX", ".": "PUNCT",
    "?": "PUNCT", "!": "PUNCT",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, str]]:
    source = child_text.ChildTextSource(2000, seed=0)
    return [source[i] for i in range(len(source))]


@pytest.fixture(scope="module")
def tokenizer(corpus):
    # 400 pieces, 259 of them special or bytes: most words split into several pieces, some after a bare "▁".
    return train_tokenizer((r["text"] for r in corpus[:1500]), 400)


def sentences_of(record: dict[str, str]) -> list[tuple[list[str], list[str]]]:
    """(words, tags) of every sentence of a record, each ending at its punctuation."""
    out, words, tags = [], [], []
    for word, tag in zip(record["text"].split(), record["pos"].split(), strict=True):
        words.append(word)
        tags.append(tag)
        if tag == "PUNCT":
            out.append((words, tags))
            words, tags = [], []
    assert not words, "a record that does not end with punctuation"
    return out


def tag_words(words: list[str], lexicon: dict[str, str]) -> list[str]:
    """Tags of a sentence from the corpus's word -> tag map; demonstratives DET before a noun phrase."""
    tags = [None if w in DEMONSTRATIVES else lexicon[w] for w in words]
    return [
        ("DET" if k + 1 < len(words) and tags[k + 1] in ("ADJ", "ADV", "NOUN") else "PRON") if w in DEMONSTRATIVES
        else t for k, (w, t) in enumerate(zip(words, tags, strict=True))
    ]  # fmt: skip


def agreement_errors(words: list[str], tags: list[str]) -> list[str]:
    """What breaks number agreement, a/an or size-before-colour in one sentence (a checker independent of the
    grammar's code): determiner and noun, each clause's subject and first verb, a relative clause's verb and its
    noun."""
    errors = []
    for k, (word, tag) in enumerate(zip(words, tags, strict=True)):
        if tag == "DET" and word not in ("the", "a", "an"):
            noun = next(words[j] for j in range(k + 1, len(words)) if tags[j] == "NOUN")
            if (noun in PLURAL) != (word in ("these", "those")):
                errors.append(f"{word} .. {noun}")
        if word in ("a", "an") and (words[k + 1][0] in "aeiou") != (word == "an"):
            errors.append(f"{word} {words[k + 1]}")
        if word in COLOURS and words[k + 1] in SIZES:
            errors.append(f"{word} {words[k + 1]}")
        if word == "that" and tag == "PRON" and k and tags[k - 1] == "NOUN":
            if (words[k - 1] in PLURAL) != (words[k + 1] in VERB_PLURAL):
                errors.append(f"{words[k - 1]} that {words[k + 1]}")
    starts = [0] + [k + 1 for k, t in enumerate(tags) if t == "CCONJ"]
    for start in starts:
        start += words[start] == "then"
        if tags[start] == "DET":
            head = next(j for j in range(start, len(words)) if tags[j] == "NOUN")
            plural = words[head] in PLURAL
        elif words[start] in ("it", "they", "this", "that", "these", "those") and tags[start] == "PRON":
            head, plural = start, words[start] in ("they", "these", "those")
        else:
            continue
        verb = next(words[j] for j in range(head + 1, len(words)) if tags[j] in ("AUX", "VERB"))
        if plural != (verb in VERB_PLURAL):
            errors.append(f"{words[head]} .. {verb}")
    return errors


def test_one_tag_per_word_each_word_tagged_by_its_class(corpus):
    seen = collections.defaultdict(collections.Counter)
    for record in corpus:
        words, tags = record["text"].split(), record["pos"].split()
        assert len(words) == len(tags) and set(tags) <= set(POS_TAGS), record
        assert record["text"] == " ".join(words) and record["text"].islower()
        for k, (word, tag) in enumerate(zip(words, tags, strict=True)):
            if word in DEMONSTRATIVES:  # DET exactly when a noun phrase follows
                assert (tag == "DET") == (tags[k + 1] in ("ADJ", "ADV", "NOUN")), (record, k)
            seen[word][tag] += 1
    assert all(len(tags) == 1 for word, tags in seen.items() if word not in DEMONSTRATIVES), seen
    assert all(set(seen[w]) == {"DET", "PRON"} for w in DEMONSTRATIVES)
    tag = {word: next(iter(tags)) for word, tags in seen.items()}
    classes = {
        "NOUN": [w for pair in NOUNS for w in pair], "ADJ": SIZES + COLOURS + child_text.PROPERTIES,
        "VERB": [w for verb in VERBS for w in verb], "ADP": child_text.PREPOSITIONS, "ADV": child_text.ADVERBS,
    }  # fmt: skip
    for expected, words in classes.items():  # every word of the grammar's lists occurs, with its class's tag
        assert {w: tag.get(w) for w in words} == dict.fromkeys(words, expected)
    assert {w: tag[w] for w in LEXICON} == LEXICON
    assert {"NOUN", "VERB", "AUX"} <= set(tag.values())


def test_hand_checked_documents():
    assert child_text.document(0, "train", 13) == {
        "text": "look at the red dog . this is the box ! these are the big red diamonds !",
        "pos": "VERB ADP DET ADJ NOUN PUNCT PRON AUX DET NOUN PUNCT PRON AUX DET ADJ ADJ NOUN PUNCT",
        "register": "spoken",
    }
    assert child_text.document(0, "train", 19) == {
        "text": "the small pink rabbits that play are sitting .",
        "pos": "DET ADJ ADJ NOUN PRON VERB AUX VERB PUNCT",
        "register": "written",
    }
    text = "a very little dog beside that silver block has the red rabbit and the block falls ."
    assert child_text.document(0, "train", 25)["text"] == text
    assert child_text.document(0, "train", 25)["pos"] == (
        "DET ADV ADJ NOUN ADP DET ADJ NOUN VERB DET ADJ NOUN CCONJ DET NOUN VERB PUNCT"
    )


def test_records_are_pure_functions_of_seed_split_and_index():
    source = child_text.ChildTextSource(50, seed=3)
    again = child_text.ChildTextSource(50, seed=3)
    assert [source[i] for i in range(50)] == [again[i] for i in range(50)]
    for other in (child_text.ChildTextSource(50, seed=3, split="test"), child_text.ChildTextSource(50, seed=4)):
        assert sum(source[i] == other[i] for i in range(50)) < 5
    assert list(text_sources.texts(source, 3)) == [source[i]["text"] for i in range(3)]
    with pytest.raises(IndexError):
        source[50]


def test_register_mix_lengths_and_agreement_in_every_sentence(corpus):
    spoken = np.array([r["register"] == "spoken" for r in corpus])
    p = child_text.SPOKEN_FRACTION
    assert abs(spoken.mean() - p) < 4 * math.sqrt(p * (1 - p) / len(corpus))
    words = np.array([len(r["text"].split()) for r in corpus])
    assert words[~spoken].mean() > 1.8 * words[spoken].mean()
    counts = np.array([len(sentences_of(r)) for r in corpus])
    assert counts.min() == 1 and counts.max() == 4
    sentence_words = [len(w) for r in corpus for w, _ in sentences_of(r)]
    assert max(sentence_words) < 40
    for record in corpus:
        for words, tags in sentences_of(record):
            assert not agreement_errors(words, tags), (words, agreement_errors(words, tags))
    # The checker catches what the minimal pairs break.
    assert agreement_errors(*_tagged("the dogs is red .")) == ["dogs .. is"]
    assert agreement_errors(*_tagged("this dogs jump .")) == ["this .. dogs"]
    assert agreement_errors(*_tagged("the red big ball rolls .")) == ["red big"]
    assert agreement_errors(*_tagged("the dog that jump sleeps .")) == ["dog that jump", "dog .. jump"]


def _tagged(sentence: str) -> tuple[list[str], list[str]]:
    words = sentence.split()
    return words, tag_words(words, {**LEXICON, "dogs": "NOUN", "dog": "NOUN", "ball": "NOUN", "red": "ADJ",
                                    "big": "ADJ", "jump": "VERB", "rolls": "VERB", "sleeps": "VERB"})  # fmt: skip


def test_written_documents_are_harder_by_both_difficulties():
    source = child_text.ChildTextSource(600, seed=1)
    written = np.array([source[i]["register"] == "written" for i in range(len(source))])
    np.testing.assert_array_equal(child_text.difficulty(source, "spoken_first"), written.astype(float))
    unigram = child_text.difficulty(source, "unigram")
    assert unigram[written].mean() > 1.2 * unigram[~written].mean()
    assert unigram[~written].max() > unigram[written].min()  # the registers overlap
    # Add-one unigram perplexity, by hand on a small source.
    small = child_text.ChildTextSource(30, seed=2)
    documents = [small[i]["text"].split() for i in range(30)]
    counts = collections.Counter(w for d in documents for w in d)
    total = sum(counts.values()) + len(counts)
    expected = [math.exp(-sum(math.log((counts[w] + 1) / total) for w in d) / len(d)) for d in documents]
    np.testing.assert_allclose(child_text.difficulty(small, "unigram"), expected, rtol=1e-12)
    with pytest.raises(ValueError, match=r"Unknown difficulty 'bigram'; use one of \['unigram', 'spoken_first'\]"):
        child_text.difficulty(small, "bigram")


def test_word_piece_tags_follow_the_whole_text_encoding(corpus, tokenizer):
    split_words = truncated = 0
    for record in corpus[1500:1700]:
        text, pos = record["text"], record["pos"]
        for max_len in (12, 128):
            ids, tags = child_text.word_piece_tags(tokenizer, text, pos, max_len)
            np.testing.assert_array_equal(ids, tokenizer.encode([text], max_len)[0])
            assert ids.dtype == tags.dtype == np.int32 and ids.shape == tags.shape == (max_len,)
            # Reference: a piece starting with "▁" starts the next word; every piece takes its word's tag.
            word_tags, word, expected = pos.split(), -1, []
            for i in ids:
                if i in (BOS_ID, EOS_ID, PAD_ID):
                    expected.append(-1)
                    continue
                word += tokenizer._sp.id_to_piece(int(i)).startswith("\u2581")
                expected.append(POS_TAGS.index(word_tags[word]))
            np.testing.assert_array_equal(tags, expected)
            truncated += ids[-1] == EOS_ID
        split_words += len(text.split()) < (ids > EOS_ID).sum()
    assert (
        truncated > 100 and split_words > 100
    )  # the test tokenizer splits words, so pieces and words do not line up one to one

    class OnePiecePerText:  # encodes a whole text as one piece: not the words' pieces one after another
        def encode(self, texts, max_len):
            return np.array([[BOS_ID, 4 + len(t), EOS_ID] + [PAD_ID] * (max_len - 3) for t in texts], np.int32)

    with pytest.raises(ValueError, match="does not encode 'the dog jumps .' as its words' pieces"):
        child_text.word_piece_tags(OnePiecePerText(), "the dog jumps .", "DET NOUN VERB PUNCT", 16)
    with pytest.raises(ValueError, match="4 words but 3 tags"):
        child_text.word_piece_tags(tokenizer, "the dog jumps .", "DET NOUN VERB", 16)


def test_minimal_pairs_differ_minimally_and_only_the_grammatical_one_is_the_corpus(corpus):
    pairs = child_text.minimal_pairs(seed=0, per_phenomenon=50)
    assert pairs == child_text.minimal_pairs(seed=0, per_phenomenon=50)
    assert [p for p, _, _ in pairs] == [p for p in child_text.PHENOMENA for _ in range(50)]
    assert len({(good, bad) for _, good, bad in pairs}) == len(pairs)
    lexicon = {w: t for r in corpus for w, t in zip(r["text"].split(), r["pos"].split(), strict=True)}
    corpus_sentences = {" ".join(words) for r in corpus for words, _ in sentences_of(r)}
    for phenomenon, good, bad in pairs:
        good_words, bad_words = good.split(), bad.split()
        assert set(good_words) | set(bad_words) <= set(lexicon), "a word the corpus never uses"
        good_tags, bad_tags = tag_words(good_words, lexicon), tag_words(bad_words, lexicon)
        assert good_words[-1] == "." and not agreement_errors(good_words, good_tags), good
        assert agreement_errors(bad_words, bad_tags), bad
        assert bad not in corpus_sentences
        differ = [k for k, (g, b) in enumerate(zip(good_words, bad_words, strict=True)) if g != b]
        if phenomenon == "adjective_order":
            k = differ[0]
            assert differ == [k, k + 1] and good_words[k : k + 2] == bad_words[k + 1 : k - 1 : -1]
            assert good_words[k] in SIZES and good_words[k + 1] in COLOURS
            continue
        assert len(differ) == 1
        assert good_tags[differ[0]] == ("DET" if phenomenon == "determiner" else _verb_tag(good_words[differ[0]]))
        if phenomenon == "attractor":  # a noun of the other number between the subject and its verb
            nouns = [good_words[j] for j in range(differ[0]) if good_tags[j] == "NOUN"]
            assert len(nouns) == 2 and (nouns[0] in PLURAL) != (nouns[1] in PLURAL)
    some = {good for _, good, _ in pairs} & corpus_sentences  # the grammar's sentences: many turn up in the corpus
    assert some and not {bad for _, _, bad in pairs} & corpus_sentences


def _verb_tag(word: str) -> str:
    return "AUX" if word in ("is", "are") else "VERB"


def window_logits(params, tokens):
    """A tiny bidirectional model: the logits at t read the pieces at t - 1, t (twice) and t + 1."""
    e = params["embed"][tokens]
    zero = jnp.zeros_like(e[:, :1])
    context = 2 * e + jnp.concatenate([zero, e[:, :-1]], 1) + jnp.concatenate([e[:, 1:], zero], 1)
    return jnp.tanh(context) @ params["out"]


def reference_plls(params, token_rows: np.ndarray, mask_id: int) -> np.ndarray:
    """Pseudo-log-likelihoods [N] by a loop over every real piece, the masked copy scored alone in float64."""
    embed, out = (np.asarray(params[k], np.float64) for k in ("embed", "out"))
    plls = []
    for row in token_rows:
        total = 0.0
        for t in np.nonzero(~np.isin(row, (PAD_ID, BOS_ID, EOS_ID)))[0]:
            masked = row.copy()
            masked[t] = mask_id
            context = 2 * embed[masked[t]] + embed[masked[t - 1]] + (embed[masked[t + 1]] if t + 1 < len(row) else 0)
            logits = np.tanh(context) @ out
            total += logits[row[t]] - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        plls.append(total)
    return np.array(plls)


def test_evaluator_against_a_numpy_loop(tokenizer):
    mask_id, max_len = tokenizer.vocab_size, 24
    pairs = child_text.minimal_pairs(seed=1, per_phenomenon=3)
    pairs.append(("tie", pairs[0][1], pairs[0][1]))
    texts = [child_text.document(1, "test", i)["text"] for i in range(4)]
    keys = jax.random.split(jax.random.PRNGKey(0))
    params = {
        "embed": jax.random.normal(keys[0], (mask_id + 1, 8)),
        "out": jax.random.normal(keys[1], (8, mask_id + 1)),
    }
    evaluator = MinimalPairsEvaluator(
        window_logits, tokenizer, mask_id=mask_id, max_len=max_len, pairs=pairs, texts=texts, batch_size=32
    )
    metrics = evaluator.evaluate(params)
    tokens = tokenizer.encode([p[1] for p in pairs] + [p[2] for p in pairs] + texts, max_len)
    expected = reference_plls(params, tokens, mask_id)
    np.testing.assert_allclose(evaluator.pseudo_log_likelihoods(params), expected, rtol=1e-4)
    n = len(pairs)
    right = expected[:n] > expected[n : 2 * n]
    assert not right[-1]  # the tie
    assert metrics["minimal_pairs/accuracy"] == pytest.approx(100 * right.mean())
    by_phenomenon = 100 * right[:-1].reshape(len(child_text.PHENOMENA), 3).mean(1)
    for phenomenon, expected_accuracy in zip(child_text.PHENOMENA, by_phenomenon, strict=True):
        assert metrics[f"minimal_pairs/{phenomenon}"] == pytest.approx(expected_accuracy)
    assert metrics["minimal_pairs/tie"] == 0.0
    pieces = (~np.isin(tokens[2 * n :], (PAD_ID, BOS_ID, EOS_ID))).sum()
    assert metrics["minimal_pairs/pseudo_perplexity"] == pytest.approx(math.exp(-expected[2 * n :].sum() / pieces))
    assert evaluator.description.startswith(f"{n} minimal pairs (agreement, attractor")
    # Batches that do not divide the masked copies (the last one padded) score the same.
    smaller = MinimalPairsEvaluator(
        window_logits, tokenizer, mask_id=mask_id, max_len=max_len, pairs=pairs, texts=texts, batch_size=7
    )
    np.testing.assert_allclose(smaller.pseudo_log_likelihoods(params), expected, rtol=1e-4)


def test_a_model_that_prefers_the_grammatical_pieces_scores_every_pair(tokenizer):
    """An oracle: where a masked copy matches a grammatical sentence everywhere else, it bets on that sentence's
    piece; elsewhere it is uniform. Every grammatical sentence then outscores its ungrammatical twin."""
    mask_id, max_len = tokenizer.vocab_size, 24
    pairs = child_text.minimal_pairs(seed=2, per_phenomenon=5)
    grammatical = jnp.asarray(tokenizer.encode([good for _, good, _ in pairs], max_len))
    bets = jax.nn.one_hot(grammatical, mask_id + 1)  # [P, L, V]

    def oracle(params, tokens):
        matches = jnp.all((tokens[:, None] == grammatical[None]) | (tokens[:, None] == mask_id), -1)  # [B, P]
        return params * jnp.einsum("bp,plv->blv", matches.astype(jnp.float32), bets)

    texts = [child_text.document(2, "test", 0)["text"]]
    evaluator = MinimalPairsEvaluator(
        oracle, tokenizer, mask_id=mask_id, max_len=max_len, pairs=pairs, texts=texts, batch_size=64
    )
    metrics = evaluator.evaluate(jnp.float32(30.0))
    assert metrics == {
        "minimal_pairs/accuracy": 100.0, **{f"minimal_pairs/{p}": 100.0 for p in child_text.PHENOMENA},
        "minimal_pairs/pseudo_perplexity": pytest.approx(mask_id + 1),  # uniform on a text that is no pair
    }  # fmt: skip
    # Uniform: a pair is a tie unless its sentences have different numbers of pieces (fewer pieces score higher).
    pieces = [(tokenizer.encode([s], max_len)[0] > EOS_ID).sum() for _, good, bad in pairs for s in (good, bad)]
    expected = 100 * np.mean(np.less(pieces[::2], pieces[1::2]))
    assert evaluator.evaluate(jnp.float32(0.0))["minimal_pairs/accuracy"] == pytest.approx(expected)
