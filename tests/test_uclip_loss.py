"""uCLIP: the second language, the frozen multilingual encoder and the loss against NumPy float64 references."""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from input_pipeline import second_language, shapes
from losses import uclip
from models.two_tower import build_model
from tests.tiny_training import VOCAB, batch, tiny_config


@pytest.fixture(autouse=True)
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_info_nce(a, b, tau):
    logits = a @ b.T / tau
    rows = [np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(len(a))]
    cols = [np.log(np.exp(logits[:, j]).sum()) - logits[j, j] for j in range(len(a))]
    return 0.5 * (np.mean(rows) + np.mean(cols))


def np_head(p, x):
    """models/heads.py MlpHead: Dense - batch-statistics norm - ReLU - Dense, then L2 normalisation."""
    h = x @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * p["norm"]["scale"] + p["norm"]["bias"]
    return unit(np.maximum(h, 0) @ p["fc2"]["kernel"] + p["fc2"]["bias"])


def test_the_second_language_is_a_consistent_one_to_one_word_mapping_unseen_in_english():
    table = second_language.dictionary()
    assert len(set(table.values())) == len(table) == len(second_language.vocabulary())
    english_words = set(second_language.vocabulary())
    for index in range(20):
        caption = shapes.make_example(0, "train", index)["caption"]
        translated = second_language.translate(caption)
        words = caption.replace(",", "").split()
        assert translated.replace(",", "").split() == [table[w] for w in words]
        assert translated.count(",") == caption.count(",")
        assert not english_words & set(translated.replace(",", "").split())


def test_the_multilingual_encoder_is_the_mean_of_word_vectors_and_aligns_translations_imperfectly():
    table = second_language.concept_table(16, mismatch=0.5)
    words = second_language.encoder_words()
    caption = "small red circle top left"
    ids = second_language.word_ids([caption, second_language.translate(caption), "red zzz"], 8)
    assert list(ids[0, :5]) == [words.index(w) for w in caption.split()] and list(ids[0, 5:]) == [-1] * 3
    assert ids[2, 1] == -1  # a word outside both vocabularies is left out
    embedded = second_language.encode(ids, table)
    np.testing.assert_allclose(embedded[0], unit(table[ids[0, :5]].mean(0)), rtol=1e-6)
    np.testing.assert_allclose(embedded[2], unit(table[words.index("red")]), rtol=1e-6)
    np.testing.assert_allclose(uclip.multilingual_embedding(ids, table), embedded, rtol=1e-5, atol=1e-6)
    assert 0.5 < embedded[0] @ embedded[1] < 0.99  # aligned, not identical
    assert second_language.concept_table(16, mismatch=0.0)[words.index("red")] @ unit(
        second_language.concept_table(16, mismatch=0.0)[words.index(second_language.translate("red"))]
    ) == pytest.approx(1.0)


def test_soft_retrieval_intra_and_info_nce_match_numpy():
    rng = np.random.default_rng(0)
    q, bank = unit(rng.normal(size=(3, 4))), unit(rng.normal(size=(7, 4)))
    w = np.exp(q @ bank.T / 0.1)
    mean = (w / w.sum(1, keepdims=True)) @ bank
    # models/two_tower.l2_normalize divides by sqrt(|x|^2 + 1e-6); a soft mean has |x| < 1, so that eps shows.
    np.testing.assert_allclose(
        uclip.soft_retrieval(q, bank, 0.1), mean / np.sqrt(np.sum(mean**2, -1, keepdims=True) + 1e-6), rtol=1e-12
    )
    a, b, c, d = (unit(rng.normal(size=(5, 4))) for _ in range(4))
    np.testing.assert_allclose(uclip.info_nce(a, b, 0.5), np_info_nce(a, b, 0.5), rtol=1e-12)
    intra = np.mean([(np.linalg.norm(a[i] - b[i]) + np.linalg.norm(c[i] - d[i])) / 2 for i in range(5)])
    np.testing.assert_allclose(uclip.intra_loss(a, b, c, d), intra, rtol=1e-12)


def test_loss_matches_numpy_without_noise():
    config = tiny_config(batch_size=6)
    config.model.head_dim = config.model.embed_dim
    config.model.head_hidden_dim = 2 * config.model.embed_dim
    config.uclip = ml_collections.ConfigDict(
        dict(bank_size=8, retrieval_temperature=0.1, temperature=0.2, noise_std=0.0, intra_weight=0.1, mismatch=0.5)
    )
    model = build_model(config, VOCAB)
    x = batch(config)
    params = model.init(jax.random.PRNGKey(0), x["image"][:1], x["text"][:1])["params"]
    params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    captions = [shapes.make_example(0, "train", i)["caption"] for i in range(6)]
    x["caption_words"] = second_language.word_ids(captions, second_language.MAX_WORDS)
    rng = np.random.default_rng(1)
    d = config.model.embed_dim
    extra = {
        "concepts": second_language.concept_table(d, 0.5).astype(np.float64),
        "image_bank": unit(rng.normal(size=(8, d))),
        "text_bank": unit(rng.normal(size=(8, d))),
    }
    loss, metrics = jax.jit(functools.partial(uclip.loss, model=model, config=config))(
        params, x, extra, jax.random.PRNGKey(0)
    )

    c = np.asarray(jax.jit(lambda p: model.apply({"params": p}, None, x["text"])["text_embedding"])(params))
    u = second_language.encode(x["caption_words"], extra["concepts"]).astype(np.float64)

    def retrieve(q, bank):
        w = np.exp(q @ bank.T / 0.1)
        return unit((w / w.sum(1, keepdims=True)) @ bank)

    a_e, a_m = np_head(params["text_head"], u), np_head(params["text_head"], retrieve(u, extra["text_bank"]))
    b_t, b_v = np_head(params["image_head"], c), np_head(params["image_head"], retrieve(c, extra["image_bank"]))
    intra = np.mean(np.linalg.norm(a_m - a_e, axis=1) + np.linalg.norm(b_t - b_v, axis=1)) / 2
    expected = np_info_nce(a_e, b_t, 0.2) + np_info_nce(a_m, b_v, 0.2) + 0.1 * intra
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["intra_loss"], intra, rtol=1e-5)
    config.uclip.noise_std = 0.1
    noisy, _ = jax.jit(functools.partial(uclip.loss, model=model, config=config))(
        params, x, extra, jax.random.PRNGKey(0)
    )
    assert abs(float(noisy) - float(loss)) > 1e-4
