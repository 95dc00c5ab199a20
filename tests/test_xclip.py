"""X-CLIP: the clips are a pure function of (seed, split, index) and show the motion their caption names, one
frame cannot tell the order-only motions apart, the cross-frame block equals a float64 NumPy recomputation, the
loss equals InfoNCE plus the prompted cross-entropy in float64, the video evaluator's metrics are right on
perfect and random predictors, the options are checked before jax starts, and a run trains end to end."""

from __future__ import annotations

import functools
import math
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from contrastive_reference import grouped_infonce, unit_rows
from tiny_training import VOCAB, tiny_config

from configs import common
from configs import xclip as xclip_config
from evaluation import video_eval
from evaluation.retrieval import retrieval_metrics
from input_pipeline import shape_video
from losses import xclip
from models.transformer import CrossFrameBlock
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.validation import ConfigError, validate_config

MOTION = {name: index for index, name in enumerate(shape_video.MOTIONS)}


def _object(frame: np.ndarray) -> tuple[float, float, int, np.ndarray]:
    """(centre x, centre y, area in pixels, mean RGB) of the saturated pixels: found without the renderer,
    the objects' colours are saturated and the background grey."""
    frame = frame.astype(np.int32)
    ys, xs = np.nonzero(frame.max(-1) - frame.min(-1) > 70)
    return xs.mean(), ys.mean(), len(xs), frame[ys, xs].mean(0)


def test_clips_are_a_pure_function_of_seed_split_and_index():
    first, again = shape_video.make_clip(3, "train", 11, 16), shape_video.make_clip(3, "train", 11, 16)
    assert first["caption"] == again["caption"] and np.array_equal(first["video"], again["video"])
    assert not np.array_equal(first["video"], shape_video.make_clip(3, "test", 11, 16)["video"])
    assert not np.array_equal(first["video"], shape_video.make_clip(4, "train", 11, 16)["video"])
    source = shape_video.ShapesVideoSource("train", 20, seed=3, image_size=16)
    assert np.array_equal(source[11]["video"], first["video"]) and source[11]["caption"] == first["caption"]
    assert first["video"].shape == (shape_video.CLIP_FRAMES, 16, 16, 3) and first["video"].dtype == np.uint8
    assert len(first["hard_negatives"]) == xclip.MAX_NEGATIVES == len(shape_video.MOTIONS) - 1
    picked = shape_video.frame_indices(8, 4, np.random.default_rng(0))
    assert np.all(np.diff(picked) > 0) and np.all(picked // 2 == np.arange(4))  # one from each segment, in order


def test_frames_show_the_motion_the_caption_names():
    for index in range(60):
        clip = shape_video.make_clip(0, "train", index, 32)
        motion = shape_video.MOTIONS[int(clip["motion"])]
        assert motion in clip["caption"] and all(motion not in n for n in clip["hard_negatives"])
        x, y, area, rgb = map(np.array, zip(*map(_object, clip["video"]), strict=True))
        step = {"moving right": 1, "moving left": -1}.get(motion, 0)
        if step:
            assert np.all(step * np.diff(x) > 1.0), (index, x)  # the centre travels 14 px over the 7 frame gaps
        elif motion != "changing colour":  # (the edge pixels that count as saturated change with the colour)
            assert np.ptp(x) < 0.6, (index, motion, x)
        change = {"growing": 1, "shrinking": -1}.get(motion, 0)
        if change:  # the radius doubles; whole pixels may not grow between two frames
            assert np.all(change * np.diff(area) >= 0) and change * (area[-1] - area[0]) > 0.6 * area.max(), area
        elif motion != "changing colour":
            assert np.ptp(area) <= 0.25 * area.mean(), (index, motion, area)
        halves = np.abs(rgb[: len(rgb) // 2].mean(0) - rgb[len(rgb) // 2 :].mean(0)).max()
        assert (halves > 40) == (motion == "changing colour"), (index, motion, rgb)


def _moments(frame: np.ndarray) -> np.ndarray:
    """[6]: the saturation mass of the frame (the object's size), its centre and mean colour (objects of a
    pixel or two included)."""
    frame = frame.astype(np.float64)
    weight = np.clip(frame.max(-1) - frame.min(-1) - 30, 0, None) + 1e-9
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    mean = lambda a: (weight * a).sum() / weight.sum()  # noqa: E731
    return np.array([weight.sum(), mean(xs), mean(ys), *(mean(frame[..., c]) for c in range(3))])


def _features(clips: list[dict], frames: list[int]) -> np.ndarray:
    """Per clip: the object's moments in each of `frames` (an index per clip each), plus the 4 x 4
    average-pooled grey of those frames."""
    rows = []
    for clip, frame in zip(clips, frames, strict=True):
        video = clip["video"][np.atleast_1d(frame)]
        side = video.shape[1] // 4
        grey = video.mean(-1).reshape(len(video), 4, side, 4, side).mean((2, 4)).reshape(-1)
        rows.append(np.concatenate([*map(_moments, video), grey]))
    return np.array(rows)


def _held_out_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    half = len(labels) // 2
    scaler = StandardScaler().fit(features[:half])
    classifier = LogisticRegression(max_iter=2000).fit(scaler.transform(features[:half]), labels[:half])
    return classifier.score(scaler.transform(features[half:]), labels[half:])


@pytest.fixture(scope="module")
def clips_of_order_only_motions() -> list[dict]:
    return [c for c in map(functools.partial(shape_video.make_clip, 1, "train", image_size=16), range(1200))
            if c["motion"] in shape_video.ORDER_ONLY]  # fmt: skip


@pytest.mark.parametrize("pair", [("moving left", "moving right"), ("growing", "shrinking")])
def test_one_frame_cannot_tell_the_order_only_motions_apart(pair, clips_of_order_only_motions):
    """A frame drawn at random from a clip is distributed alike for both motions of a pair: a classifier on it
    stays at chance, while the same classifier on the first and last frames together tells them apart."""
    clips = [c for c in clips_of_order_only_motions if shape_video.MOTIONS[c["motion"]] in pair]
    labels = np.array([shape_video.MOTIONS[c["motion"]] == pair[1] for c in clips])
    rng = np.random.default_rng(0)
    one_frame = _held_out_accuracy(_features(clips, list(rng.integers(0, shape_video.CLIP_FRAMES, len(clips)))), labels)
    assert len(clips) > 300 and abs(one_frame - 0.5) < 0.1, one_frame  # ~200 held-out clips: 2.8 sigma
    both_ends = _held_out_accuracy(_features(clips, [[0, shape_video.CLIP_FRAMES - 1]] * len(clips)), labels)
    assert both_ends > 0.95, both_ends


def _layer_norm(x, p, eps=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def _attention(q_in, kv_in, p):
    """Multi-head attention [..., Nq, W] x [..., Nk, W] in Flax's parameter layout."""
    q, k, v = (np.einsum("...nw,whd->...nhd", x, p[n]["kernel"]) + p[n]["bias"]
               for x, n in ((q_in, "query"), (kv_in, "key"), (kv_in, "value")))  # fmt: skip
    logits = np.einsum("...qhd,...khd->...hqk", q, k) / math.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("...hqk,...khd->...qhd", weights, v)
    return np.einsum("...qhd,hdw->...qw", out, p["out"]["kernel"]) + p["out"]["bias"]


def _cross_frame_block(x, p, frames):
    """X-CLIP's CrossFramelAttentionBlock in NumPy, for x [B T, N, W] with class tokens first."""
    gelu = lambda a: 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a**3)))  # noqa: E731
    dense = lambda a, q: a @ q["kernel"] + q["bias"]  # noqa: E731
    message = dense(x[:, 0], p["message_fc"]).reshape(-1, frames, x.shape[-1])
    normed = _layer_norm(message, p["message_ln"])
    message = (message + _attention(normed, normed, p["message_attn"])).reshape(-1, 1, x.shape[-1])
    tokens = _layer_norm(np.concatenate([x, message], 1), p["ln1"])
    x = x + _attention(tokens, tokens, p["attn"])[:, :-1]
    return x + dense(gelu(dense(_layer_norm(x, p["ln2"]), p["mlp"]["fc1"])), p["mlp"]["fc2"])


def test_cross_frame_block_equals_a_numpy_recomputation():
    frames, width = 3, 8
    x = np.random.default_rng(0).normal(size=(2 * frames, 5, width))
    block = CrossFrameBlock(heads=2, mlp_dim=16, frames=frames, dtype=jnp.float64, layer_norm_dtype=jnp.float64)
    with jax.enable_x64(True):
        params = block.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]
        keys = iter(jax.random.split(jax.random.PRNGKey(1), 64))  # every parameter, biases and norms included, random
        params = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape, p.dtype), params)
        got = np.asarray(jax.jit(block.apply)({"params": params}, jnp.asarray(x)))
    np.testing.assert_allclose(
        got, _cross_frame_block(x, jax.tree.map(np.asarray, params), frames), rtol=1e-10, atol=1e-12
    )
    # A frame's output hears the other frames of its clip (through the messages), and no other clip.
    moved = x.copy()
    moved[2] += 1.0
    numpy_params = jax.tree.map(np.asarray, params)
    changed = _cross_frame_block(moved, numpy_params, frames) - _cross_frame_block(x, numpy_params, frames)
    changed = np.abs(changed).max((1, 2))
    assert np.all(changed[:3] > 1e-3) and np.all(changed[3:] == 0)


def test_only_the_video_modules_see_the_order_of_the_frames():
    config = tiny_config()
    config.model.video_frames = 4
    model = build_model(config, VOCAB)
    init = jax.jit(model.init)
    params = init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), jnp.ones((1, 8), jnp.int32))["params"]
    videos = jax.random.normal(jax.random.PRNGKey(1), (2, 4, 16, 16, 3))
    reverse = videos[:, ::-1]

    @jax.jit
    def embeddings(videos):
        variables = {"params": params}
        mean = model.apply(variables, videos, method=model.frame_mean_embedding)
        return mean, model.apply(variables, videos, method=model.encode_video)["video_embedding"]

    (mean, video), (mean_reversed, video_reversed) = embeddings(videos), embeddings(reverse)
    np.testing.assert_allclose(mean, mean_reversed, atol=1e-6)
    assert np.abs(video - video_reversed).max() > 1e-4


def test_loss_is_video_infonce_plus_the_prompted_cross_entropy():
    rng = np.random.default_rng(0)
    batch, candidates, dim, log_scale = 6, 1 + xclip.MAX_NEGATIVES, 8, np.log(9.0)
    embeddings = {
        "video_embedding": unit_rows(rng.normal(size=(batch, dim))),
        "text_embedding": unit_rows(rng.normal(size=(batch, dim))),
        "video_tokens": rng.normal(size=(batch, 4, dim)),
        "candidate_features": rng.normal(size=(batch, candidates, dim)),
    }
    negative_valid = rng.random((batch, candidates - 1)) < 0.6
    negative_valid[0] = False  # a clip without hard negatives: its prompted term is 0
    group = np.array([0, 1, 2, 1, 3, 4])  # captions 1 and 3 are one string: not each other's negatives

    def prompt_text(text, tokens):  # stands in for the prompt generator: any function of (text, the clip's tokens)
        return text + 0.5 * tokens.mean(1, keepdims=True)

    def apply(variables, *args, method=None):
        if method is None:
            return {"logit_scale": variables["params"]["s"]}
        prompted = method(*args)
        return prompted / jnp.linalg.norm(prompted, axis=-1, keepdims=True)

    model = types.SimpleNamespace(apply=apply, prompt_text=prompt_text)
    config = xclip_config.get_config()
    config.xclip.prompt_weight = 0.3
    batch_fields = {"negative_valid": negative_valid, "caption_group": group}
    with jax.enable_x64(True):
        loss, metrics = xclip.loss_from_embeddings(
            {"s": jnp.float64(log_scale)}, jax.tree.map(jnp.asarray, embeddings), batch_fields, {}, None,
            model=model, config=config,
        )  # fmt: skip
    e, s = embeddings, np.exp(log_scale)
    video = grouped_infonce(e["video_embedding"], e["text_embedding"], s, np.ones(batch, bool), group)
    prompted = unit_rows(e["candidate_features"] + 0.5 * e["video_tokens"].mean(1, keepdims=True))
    terms = []
    for i in range(batch):
        keep = np.concatenate([[True], negative_valid[i]])
        logits = s * prompted[i][keep] @ e["video_embedding"][i]
        terms.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0])
    assert terms[0] == 0.0
    np.testing.assert_allclose(metrics["video_loss"], video, rtol=1e-10)
    np.testing.assert_allclose(metrics["prompt_loss"], np.mean(terms), rtol=1e-10)
    np.testing.assert_allclose(loss, video + 0.3 * np.mean(terms), rtol=1e-10)


def test_negative_fields_pad_the_hard_negatives():
    encode = lambda texts: np.array([[len(t)] for t in texts], np.int32)  # noqa: E731
    fields = xclip.negative_fields({"caption": "a b", "hard_negatives": ("a b", "", "c")}, None, encode)
    assert fields["caption_group"] == xclip.negative_fields({"caption": "a b"}, None, encode)["caption_group"]
    assert fields["negative_valid"].tolist() == [True, True] + [False] * (xclip.MAX_NEGATIVES - 2)
    assert fields["negative_text"][:, 0].tolist() == [3, 1] + [0] * (xclip.MAX_NEGATIVES - 2)
    assert not xclip.negative_fields({"caption": "a b"}, None, encode)["negative_valid"].any()


def test_video_metrics_of_perfect_and_random_predictors():
    rng = np.random.default_rng(1)
    clips = [{"motion": m, "shape": rng.integers(8), "colour": rng.integers(8)} for m in rng.integers(0, 6, 3000)]
    labels, valid = video_eval.label_columns(clips)
    assert valid["motion_order_only"].sum() == np.isin(labels["motion"], [0, 1, 2, 3]).sum()
    assert not valid["colour"][labels["motion"] == shape_video.MOTIONS.index("changing colour")].any()
    classes = {label: len(video_eval.CLASS_PROMPTS[kind]) for label, kind in video_eval.PROMPTED_LABELS.items()}
    perfect = {label: np.eye(classes[label])[labels[label]] for label in labels}
    assert set(video_eval.classification_metrics(perfect, labels, valid).values()) == {1.0}
    random = {label: rng.normal(size=(len(clips), classes[label])) for label in labels}
    for label, value in video_eval.classification_metrics(random, labels, valid, "_x").items():
        assert abs(value - 1 / classes[label.removeprefix("video/").removesuffix("_x")]) < 0.03, (label, value)
    # A perfect retrieval: each video's embedding is its caption's.
    texts = unit_rows(rng.normal(size=(50, 8)))
    assert set(retrieval_metrics(texts, texts).values()) == {1.0}


def test_xclip_options_are_checked_before_jax_starts():
    refusals = [
        ({"model.video_frames": 1}, "config.model.video_frames >= 2"),
        ({"data.image_size": 8, "model.image.patch_size": 8}, "config.data.image_size >= 16"),
        ({"data.name": "shapes"}, "set config.data.name='shapes_video'"),
        ({"xclip.prompt_weight": -0.5}, "config.xclip.prompt_weight must be at least 0"),
    ]
    for overrides, fragment in refusals:
        config = xclip_config.get_config()
        for key, value in overrides.items():
            *parents, leaf = key.split(".")
            node = config
            for parent in parents:
                node = node[parent]
            node[leaf] = value
        with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
            validate_config(config)
    config = xclip_config.get_config()
    config.evals.video.frames = 0
    validate_config(config)  # the model's 4
    config = common.get_base_config("data=shapes_video")
    with pytest.raises(ConfigError, match=r"only the xclip objective trains on"):
        validate_config(config)
    config = common.get_base_config(None)  # a CLIP run scored on clips: the entry needs its own frames
    config.evals.video = ml_collections.ConfigDict(dict(type="video"))
    with pytest.raises(ConfigError, match=r"set config.evals.video.frames"):
        validate_config(config)
    config.evals.video.frames = 4
    validate_config(config)


def test_xclip_trains_and_prints_video_beside_the_baseline(tmp_path, capsys):
    config = tiny_config(total_steps=4, batch_size=8, log_every_steps=2, eval_every_steps=4,
                         checkpoint_every_steps=4)  # fmt: skip
    method = xclip_config.get_config()
    config.update(objective="xclip", xclip=method.xclip, evals=method.evals)
    config.model.video_frames = 4
    config.model.text.max_len = 64  # the held-out prompts, in a tokenizer fitted to 32 clips' captions
    config.data.update(name="shapes_video", train_size=32, cache_dir="")
    config.eval.update(num_examples=24, batch_size=12)
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    e = summary["eval"]
    assert summary["step"] == 4 and np.isfinite(summary["final_loss"])
    for label in video_eval.PROMPTED_LABELS:
        for suffix in ("", "_unprompted", "_mean_frames"):
            assert 0.0 <= e[f"video/{label}{suffix}"] <= 1.0
    printed = capsys.readouterr().out
    assert "video zero-shot motion " in printed and "mean of frames" in printed and "(chance 16.7%)" in printed
    assert "video zero-shot appearance: shape" in printed and "text->video R@1/5/10 (clips)" in printed
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "train/prompt_loss" in line]
    assert len(records) == 2


def test_clip_folders_are_read_and_bad_clips_skipped_and_counted(tmp_path):
    from PIL import Image

    from input_pipeline.cleaning import PROBLEM_INDEX
    from input_pipeline.pipeline import VideoTrainTransform
    from input_pipeline.video_folders import VideoFolderSource

    def clip(name, frames=3, caption=b"a red circle moving left", negatives=None, corrupt=False, mode="RGB"):
        folder = tmp_path / name
        folder.mkdir()
        for t in range(frames):
            Image.new(mode, (24, 20), (10 * t, 0, 0) if mode == "RGB" else 10 * t).save(folder / f"{t:03d}.png")
        if corrupt:
            (folder / "001.png").write_bytes(b"not a png")
        if caption is not None:
            (folder / "caption.txt").write_bytes(caption)
        if negatives is not None:
            (folder / "hard_negatives.txt").write_bytes(negatives)

    clip("a_good", negatives=b"a red circle moving right\n\na red circle growing\n")
    clip("b_grey", mode="L", caption=b"a  grey\tsquare ")
    clip("c_no_caption", caption=None)
    clip("d_empty_caption", caption=b"  \n")
    clip("e_no_frames", frames=0)
    clip("f_corrupt", corrupt=True)
    source = VideoFolderSource(str(tmp_path), image_size=16)
    records = [source[i] for i in range(len(source))]
    assert records[0]["video"].shape == (3, 16, 16, 3) and records[0]["video"][2, 0, 0, 0] == 20  # frames in order
    assert records[0]["hard_negatives"] == ("a red circle moving right", "a red circle growing")
    assert records[1]["caption"] == "a grey square" and records[1]["hard_negatives"] == ()
    assert records[1]["problems"][PROBLEM_INDEX["repaired_grayscale"]] == 3  # each frame converted to RGB
    kinds = [r.get("skipped") for r in records[2:]]
    assert kinds == ["missing_caption", "empty_caption", "missing_image", "corrupt_image"]
    assert source.texts(0)["caption"] == records[0]["caption"] and "video" not in source.texts(0)
    encode = lambda texts: np.zeros((len(texts), 8), np.int32)  # noqa: E731
    example = VideoTrainTransform(types.SimpleNamespace(encode=lambda t, n: encode(t)), 8, 4, xclip.negative_fields)
    out = example.random_map(records[0], np.random.default_rng(0))
    assert out["video"].shape == (4, 16, 16, 3) and out["negative_valid"].sum() == 2  # 3 frames fill 4 segments

    config = xclip_config.get_config()
    config.data.update(name="video_folders", path=str(tmp_path))
    validate_config(config)


def test_the_video_evaluator_refuses_a_max_len_that_cuts_its_prompts():
    class OneTokenAWord:
        def encode(self, texts, max_len):
            out = np.zeros((len(texts), max_len), np.int32)
            for i, text in enumerate(texts):
                out[i, : min(len(text.split()), max_len)] = 1
            return out

    options = dict(num_examples=1, batch_size=1, image_size=16, frames=4)
    model = types.SimpleNamespace(video_frames=0)
    with pytest.raises(ConfigError, match=r"max_len=4 cuts the video evaluator's prompts \(the longest has 7 tokens\)"):
        video_eval.VideoEvaluator(model, OneTokenAWord(), max_len=4, **options)
    video_eval.VideoEvaluator(model, OneTokenAWord(), max_len=7, **options)
