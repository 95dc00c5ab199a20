import numpy as np
import pytest

from input_pipeline import tokenizer as tok

CORPUS = [f"a {s} {c} {sh} at the {p}" for s in ("small", "large") for c in ("red", "blue", "green")
          for sh in ("circle", "square") for p in ("top", "bottom left", "center")] * 20  # fmt: skip


def test_round_trip_and_special_tokens():
    t = tok.train_tokenizer(CORPUS, vocab_size=400)
    ids = t.encode(["a small red circle at the top", "blue"], max_len=64)
    assert ids.shape == (2, 64) and ids.dtype == np.int32
    assert ids[0, 0] == tok.BOS_ID and ids[1, 0] == tok.BOS_ID
    length = int(np.sum(ids[0] != tok.PAD_ID))
    assert ids[0, length - 1] == tok.EOS_ID and np.all(ids[0, length:] == tok.PAD_ID)
    assert t.decode(ids[0]) == "a small red circle at the top"
    # Unseen words and unicode survive through byte fallback.
    assert t.decode(t.encode(["a photo of a zebra é"], 32)[0]) == "a photo of a zebra é"


def test_truncation_keeps_eos():
    t = tok.train_tokenizer(CORPUS, vocab_size=400)
    ids = t.encode([" ".join(CORPUS[:5])], max_len=8)[0]
    assert ids[0] == tok.BOS_ID and ids[-1] == tok.EOS_ID and np.all(ids != tok.PAD_ID)


def test_cached_in_workdir_and_loaded_from_file(tmp_path):
    first = tok.get_tokenizer("", str(tmp_path), CORPUS, 400)
    assert (tmp_path / "tokenizer.model").is_file()
    again = tok.get_tokenizer("", str(tmp_path), iter(()), 400)  # no corpus needed: loaded from the cache
    loaded = tok.get_tokenizer(str(tmp_path / "tokenizer.model"), "/nonexistent", iter(()), 400)
    texts = ["a large blue square at the center"]
    assert np.array_equal(first.encode(texts, 12), again.encode(texts, 12))
    assert np.array_equal(first.encode(texts, 12), loaded.encode(texts, 12))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer_path"):
        tok.load_tokenizer(str(tmp_path / "missing.model"))


def test_control_tokens_are_one_id_wherever_they_stand():
    """<|...|> symbols trained in are encoded alone (no word-start piece before them, at the start or mid-text);
    other user-defined symbols keep SentencePiece's own encoding, and plain text is SentencePiece's."""
    import sentencepiece as spm

    texts = [f"<|go|> a red box {i % 7} . <mask> a blue disc ." for i in range(300)]
    t = tok.train_tokenizer(texts, 300, ("<|go|>", "<mask>"))
    raw = spm.SentencePieceProcessor(model_proto=t.model_proto)
    go, mask, space = t.piece_id("<|go|>"), t.piece_id("<mask>"), raw.piece_to_id("\u2581")

    def ids(text: str) -> list[int]:
        return [int(i) for i in t.encode([text], 64)[0] if i not in (tok.PAD_ID, tok.BOS_ID, tok.EOS_ID)]

    assert raw.encode("<|go|>") == [space, go] and ids("<|go|>") == [go]
    assert ids("a red box . <|go|> a red box .") == raw.encode("a red box .") + [go] + raw.encode("a red box .")
    assert ids("<mask> a blue disc .") == raw.encode("<mask> a blue disc .")  # not of the <|...|> form
    assert raw.encode("<mask>")[0] == space and mask in ids("<mask>")
    plain = tok.train_tokenizer(texts, 300)
    row = [int(i) for i in plain.encode(["a red box ."], 16)[0] if i]
    assert row == [tok.BOS_ID, *spm.SentencePieceProcessor(model_proto=plain.model_proto).encode("a red box ."),
                   tok.EOS_ID]  # fmt: skip
