"""The CLIP BPE tokenizer gives open_clip's ids, and transformers' CLIPTokenizer's, on a few hundred texts."""

import html
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
    """vocab.json + merges.txt written from open_clip's vocabulary, read by us, open_clip and CLIPTokenizer."""
    from input_pipeline.clip_bpe import ClipBpeTokenizer

    _, transformers = require_torch()
    open_clip, _ = _open_clip_vocabulary()
    reference_tokenizer = open_clip.tokenizer.SimpleTokenizer()
    # open_clip names its specials <start_of_text>/<end_of_text>; Hugging Face's CLIP vocab.json keeps OpenAI's names.
    openai_names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {openai_names.get(token, token): i for token, i in reference_tokenizer.encoder.items()}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(reference_tokenizer.bpe_ranks, key=reference_tokenizer.bpe_ranks.get)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    hf = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    ours = ClipBpeTokenizer(str(tmp_path))
    texts = sample_texts(np.random.default_rng(1), count=200)
    np.testing.assert_array_equal(ours.encode(texts, 32), reference_tokenizer(texts, context_length=32).numpy())
    # transformers 5's CLIPTokenizer (the `tokenizers` backend) normalises with NFC only, skipping OpenAI's
    # ftfy repair and HTML unescaping ("ﬁne", "ＡＢＣ", "&amp;" differ); give it text cleaned as OpenAI does.
    import ftfy

    cleaned = [html.unescape(html.unescape(ftfy.fix_text(text))) for text in texts]
    expected = hf(cleaned, max_length=32, truncation=True, padding="max_length")
    ids = np.array(expected["input_ids"]) * np.array(
        expected["attention_mask"]
    )  # transformers pads with EOS; we with 0
    np.testing.assert_array_equal(ours.encode(texts, 32), ids)
    assert os.path.isfile(tmp_path / "vocab.json")
