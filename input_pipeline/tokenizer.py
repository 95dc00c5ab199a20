"""SentencePiece tokenizer: trained on the training captions on first use, or loaded from a file."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from input_pipeline.clip_bpe import ClipBpeTokenizer
from input_pipeline.llama_tokenizer import LlamaTokenizer
from input_pipeline.siglip_tokenizer import SiglipTokenizer
from input_pipeline.token_ids import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from input_pipeline.wordpiece import WordPieceTokenizer

# The form of the project's control tokens (PHF's <|aligned|>); other user-defined symbols of your SentencePiece
# model (e.g. <mask>) keep SentencePiece's own encoding.
CONTROL_TOKEN = re.compile(r"<\|[^|<>\s]+\|>")


class Tokenizer:
    """Text -> [n, max_len] int32 ids: BOS, pieces, EOS, then PAD (0); EOS kept when truncating."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        if (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id()) != (PAD_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"The tokenizer model must use pad={PAD_ID}, bos={BOS_ID}, eos={EOS_ID}; "
                "retrain it with train_tokenizer() or pass pad_id/bos_id/eos_id to SentencePiece."
            )
        # Control tokens (user-defined symbols, e.g. PHF's <|aligned|>) and the bare word-start piece that
        # SentencePiece puts before one: the control token is encoded alone, so that it reads the same at the
        # start of a text and after a sentence, and a model never learns '▁' as the herald of a control token.
        proto = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
        user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.Type.USER_DEFINED
        self._controls = {
            i for i, p in enumerate(proto.pieces) if p.type == user_defined and CONTROL_TOKEN.fullmatch(p.piece)
        }
        self._space = self._sp.piece_to_id("\u2581")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def id_to_piece(self, piece_id: int) -> str:
        return self._sp.id_to_piece(piece_id)

    def encode(self, texts: Sequence[str], max_len: int) -> np.ndarray:
        """Returns [len(texts), max_len] int32."""
        out = np.full((len(texts), max_len), PAD_ID, np.int32)
        # One string per call: SentencePiece's list form costs ~160 us per call in thread set-up, 30x
        # a short caption's encoding, and the training pipeline encodes one caption per example.
        for row, ids in enumerate(self._sp.encode(text) for text in texts):
            if self._controls:
                heralds = {k for k in range(len(ids) - 1) if ids[k] == self._space and ids[k + 1] in self._controls}
                ids = [t for k, t in enumerate(ids) if k not in heralds]
            ids = [BOS_ID] + ids[: max_len - 2] + [EOS_ID]
            out[row, : len(ids)] = ids
        return out

    def piece_id(self, piece: str) -> int:
        """The id of one piece, e.g. a control token trained in as a user-defined symbol; UNK_ID when absent."""
        return self._sp.piece_to_id(piece)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; special ids and ids past the vocabulary (a decoder's padded rows, config.model.decoder.
        vocab_size) give nothing."""
        return self._sp.decode(
            [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID) and 0 <= int(i) < self.vocab_size]
        )

    def save(self, path: str) -> None:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(self.model_proto)
        os.replace(tmp, path)


def train_tokenizer(texts: Iterable[str], vocab_size: int, symbols: Sequence[str] = ()) -> Tokenizer:
    """Trains a unigram SentencePiece model in memory (well under a second for ~10^5 captions); each of `symbols`
    (control tokens, e.g. PHF's <|aligned|>) becomes one piece wherever it occurs in a text."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        byte_fallback=True,  # unseen characters (held-out prompts, unicode) stay representable
        hard_vocab_limit=False,  # the synthetic corpus may hold fewer pieces than asked for
        character_coverage=1.0,
        minloglevel=2,
        **({"user_defined_symbols": list(symbols)} if symbols else {}),
    )
    return Tokenizer(model.getvalue())


def load_tokenizer(path: str, kind: str = "sentencepiece") -> Tokenizer:
    """The tokenizer of `kind` (TOKENIZERS) stored at `path`."""
    if kind != "sentencepiece":
        return _pretrained_tokenizer(path, kind)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Tokenizer file {path!r} does not exist; fix config.text.tokenizer_path or set it to '' "
            "to train one on the training captions."
        )
    with open(path, "rb") as f:
        return Tokenizer(f.read())


def _pretrained_tokenizer(path: str, kind: str):
    """A pretrained tokenizer (same `encode`, `decode`, `vocab_size` as Tokenizer)."""
    if kind not in TOKENIZERS:
        raise ValueError(f"Unknown tokenizer {kind!r}; set config.text.tokenizer to one of {list(TOKENIZERS)}.")
    if not path:
        raise ValueError(f"The {kind} tokenizer is pretrained; set config.text.tokenizer_path to its vocabulary.")
    if kind == "wordpiece":
        return WordPieceTokenizer(path)
    if kind == "siglip":
        return SiglipTokenizer(path)
    if kind == "llama":
        return LlamaTokenizer(path)
    return ClipBpeTokenizer(path)


# config.text.tokenizer: `sentencepiece` (trained on the captions, or loaded), `wordpiece` (BERT family,
# tokenizer.json: input_pipeline/wordpiece.py), `clip_bpe` (OpenAI CLIP: input_pipeline/clip_bpe.py),
# `siglip` (SigLIP's spiece.model: input_pipeline/siglip_tokenizer.py), `llama` (a Llama-family tokenizer.model,
# its ids relabelled to this module's: input_pipeline/llama_tokenizer.py).
TOKENIZERS = ("sentencepiece", "wordpiece", "clip_bpe", "siglip", "llama")


def get_tokenizer(
    model_path: str, workdir: str, texts: Iterable[str], vocab_size: int, kind: str = "sentencepiece",
    symbols: Sequence[str] = (),
) -> Tokenizer:  # fmt: skip
    """The tokenizer at `model_path` if given, else the one cached in `workdir` (trained on first use, with the
    control tokens `symbols` as pieces)."""
    if model_path or kind != "sentencepiece":
        return load_tokenizer(model_path, kind)
    cached = os.path.join(workdir, "tokenizer.model")
    if os.path.isfile(cached):
        return load_tokenizer(cached)
    tokenizer = train_tokenizer(texts, vocab_size, symbols)
    tokenizer.save(cached)
    return tokenizer
