"""The CLIP BPE tokenizer gives open_clip's ids, and transformers' CLIPTokenizer's, on a few hundred texts."""

import json
import os

import numpy as np

from tests.interop_reference import import_open_clip, require_torch, sample_texts


def _open_clip_vocabulary():
    open_clip = import_open_clip()
    from open_clip.tokenizer import default_bpe

    return open_clip, default_bpe()


def test_ids_match_open_clip_on_unicode_and_overlong_text():
    from input_pipeline.clip_bpe import ClipBpeTokenizer

    open_clip, bpe_file = _open_clip_vocabulary()
    ours = ClipBpeTokenizer(bpe_file)
    texts = sample_texts(np.random.default_rng(0))
    expected = open_clip.tokenizer.SimpleTokenizer()(texts, context_length=77).numpy()
    np.testing.assert_array_equal(ours.encode(texts, 77), expected)
    assert ours.vocab_size == 49408 and ours.end_id == 49407
    assert (
        ours.decode(ours.encode(["a photo of a scarlet round object."], 77)[0]) == "a photo of a scarlet round object ."
    )


def test_hugging_face_tokenizer_folder_gives_transformers_ids(tmp_path):
    """vocab.json + merges.txt written from open_clip's vocabulary, read by us and by CLIPTokenizer."""
    from input_pipeline.clip_bpe import ClipBpeTokenizer

    _, transformers = require_torch()
    open_clip, _ = _open_clip_vocabulary()
    reference_tokenizer = open_clip.tokenizer.SimpleTokenizer()
    (tmp_path / "vocab.json").write_text(json.dumps(reference_tokenizer.encoder))
    merges = sorted(reference_tokenizer.bpe_ranks, key=reference_tokenizer.bpe_ranks.get)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    hf = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    ours = ClipBpeTokenizer(str(tmp_path))
    texts = sample_texts(np.random.default_rng(1), count=200)
    expected = hf(texts, max_length=32, truncation=True, padding="max_length")
    ids = np.array(expected["input_ids"]) * np.array(
        expected["attention_mask"]
    )  # transformers pads with EOS; we with 0
    np.testing.assert_array_equal(ours.encode(texts, 32), ids)
    assert os.path.isfile(tmp_path / "vocab.json")
