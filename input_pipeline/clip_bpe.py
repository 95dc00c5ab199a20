"""OpenAI CLIP's byte-level BPE tokenizer (as in CLIP's simple_tokenizer.py), reading a vocabulary file the user gives.

The vocabulary is OpenAI's `bpe_simple_vocab_16e6.txt.gz` (the merges; open_clip ships it) or a Hugging
Face CLIP tokenizer folder holding `vocab.json` and `merges.txt`. Needs `ftfy` and `regex` (interop extra).
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import os
import re
from collections.abc import Sequence

import numpy as np

from configs.errors import ConfigError

_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
START, END = "<|startoftext|>", "<|endoftext|>"
_NUM_MERGES = 49152 - 256 - 2  # OpenAI's vocabulary: 256 bytes x 2 (word-final or not), merges, 2 specials


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable unicode character, the reversible map of GPT-2 and CLIP."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _read_vocabulary(path: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    if os.path.isdir(path):
        vocab_file, merges_file = os.path.join(path, "vocab.json"), os.path.join(path, "merges.txt")
        if not (os.path.isfile(vocab_file) and os.path.isfile(merges_file)):
            raise ConfigError(f"The folder {path!r} needs vocab.json and merges.txt (a Hugging Face CLIP tokenizer).")
        with open(vocab_file, encoding="utf-8") as f:
            encoder = json.load(f)
        with open(merges_file, encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(m.split()) for m in lines if m and not m.startswith("#version")]
        if START not in encoder or END not in encoder:
            raise ConfigError(f"{vocab_file!r} lacks {START} or {END}; pass a CLIP tokenizer's vocab.json.")
        return encoder, merges
    if not os.path.isfile(path):
        raise ConfigError(
            f"CLIP BPE vocabulary {path!r} does not exist; set config.text.tokenizer_path to OpenAI's "
            "bpe_simple_vocab_16e6.txt.gz or a Hugging Face CLIP tokenizer folder."
        )
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        merges = [tuple(m.split()) for m in f.read().split("\n")[1 : _NUM_MERGES + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + [START, END]
    return {token: i for i, token in enumerate(vocab)}, merges


class ClipBpeTokenizer:
    """Text -> [n, max_len] int32 ids: <|startoftext|>, BPE tokens, <|endoftext|>, then 0.

    Like open_clip's tokenizer: text is fixed with ftfy, HTML-unescaped, whitespace-collapsed and
    lower-cased; when truncating, the last kept position becomes <|endoftext|>. Pad id 0 is also the
    token "!", so towers on these ids pool at the highest id (config.model.text.pool = "argmax").
    """

    def __init__(self, path: str):
        try:
            import ftfy
            import regex
        except ImportError:
            raise ConfigError("The clip_bpe tokenizer needs `ftfy` and `regex`; pip install -e '.[interop]'.") from None
        self._fix_text = ftfy.fix_text
        self.encoder, merges = _read_vocabulary(path)
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self.start_id, self.end_id = self.encoder[START], self.encoder[END]
        self._cache = {START: START, END: END}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, token: str) -> str:
        if token in self._cache:
            return self._cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self._cache[token] = " ".join(word)
        return self._cache[token]

    def token_ids(self, text: str) -> list[int]:
        """The BPE ids of one text, without start and end tokens."""
        text = html.unescape(html.unescape(self._fix_text(text))).strip()
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for token in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(token).split(" "))
        return ids

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """Returns [len(texts), max_len] int32."""
        out = np.zeros((len(texts), max_len), np.int32)
        for row, text in enumerate(texts):
            ids = [self.start_id] + self.token_ids(text) + [self.end_id]
            if len(ids) > max_len:
                ids = ids[:max_len]
                ids[-1] = self.end_id
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Sequence[int]) -> str:
        pieces = "".join(self.decoder[int(i)] for i in ids if int(i) not in (0, self.start_id, self.end_id))
        return (
            bytearray(self.byte_decoder[c] for c in pieces)
            .decode("utf-8", errors="replace")
            .replace("</w>", " ")
            .strip()
        )
