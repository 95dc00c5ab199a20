"""SuperEdit (METHODS.md §28): the editing pairs, the diffusion process, the denoiser, the noise-space triplet loss
and the `edits` evaluator, against closed forms and hand-checked cases."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import superedit
from configs.errors import ConfigError
from evaluation.edit_eval import EditEvaluator, edit_scores, guided_noise, to_pixels
from input_pipeline import shape_edits, transforms
from input_pipeline.shape_drawing import COLOUR_RGB, COLOURS
from input_pipeline.shapes import POSITIONS
from losses import superedit as superedit_loss
from models.denoiser import EditDenoiser
from models.diffusion import TIMESTEPS, add_noise, alpha_bars, ddim_sample
from training.validation import validate_config


def _fields(text: str) -> list[str]:
    """The instruction's words, a grid position ("top left") as one."""
    for position in sorted(POSITIONS, key=len, reverse=True):
        text = text.replace(position, position.replace(" ", "_"))
    return text.split()


def _changed(record) -> np.ndarray:
    diff = np.abs(record["image"].astype(int) - record["target"].astype(int)).max(-1)
    return diff > shape_edits.CHANGE_THRESHOLD


def test_records_are_pure_and_the_splits_differ():
    a, b = shape_edits.record(0, "train", 7), shape_edits.record(0, "train", 7)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["caption"] == b["caption"]
    test = shape_edits.record(0, "test", 7)
    assert not np.array_equal(a["image"], test["image"])


@pytest.mark.parametrize("index", range(40))
def test_an_edit_changes_the_named_object_alone(index):
    """Recolour: the changed pixels take the new colour; move: the object leaves its cell for the next one in the
    direction; add: the new object appears in the named cell. Every wrong instruction differs by one word."""
    r = shape_edits.record(0, "train", index)
    changed = _changed(r)
    assert changed.any()
    words = _fields(r["caption"])
    for wrong in map(_fields, r["hard_negatives"]):
        assert len(wrong) == len(words) and sum(a != b for a, b in zip(wrong, words, strict=True)) == 1
    cell_of = lambda ys, xs: 3 * int(np.mean(ys) * 3 // 16) + int(np.mean(xs) * 3 // 16)  # noqa: E731
    if r["edit"] == "recolour":
        # the most changed pixel (inside the object, not an antialiased edge) is nearest the named colour
        diff = np.abs(r["image"].astype(int) - r["target"].astype(int)).max(-1)
        pixel = r["target"][np.unravel_index(np.argmax(diff), diff.shape)].astype(np.float32)
        assert COLOURS[np.argmin(np.abs(COLOUR_RGB - pixel).sum(-1))] == words[-1]
    elif r["edit"] == "move":
        ys, xs = np.nonzero(changed)
        dy, dx = shape_edits.DIRECTIONS[words[-1]]
        gone = np.abs(r["image"].astype(int) - r["target"].astype(int)).max(-1) > shape_edits.CHANGE_THRESHOLD
        assert gone.sum() >= 4
        # the changed pixels span the two cells, one step apart in the instruction's direction
        span_x, span_y = xs.max() - xs.min(), ys.max() - ys.min()
        assert (span_x > span_y) == (dx != 0)
    else:
        ys, xs = np.nonzero(changed)
        assert POSITIONS[cell_of(ys, xs)] == words[-1].replace("_", " ")


def test_the_wrong_share_swaps_in_a_wrong_instruction():
    clean = [shape_edits.record(0, "train", i) for i in range(400)]
    noisy = [shape_edits.record(0, "train", i, wrong_rate=0.25) for i in range(400)]
    wrong = [n["instruction_is_wrong"] for n in noisy]
    assert 0.18 < np.mean(wrong) < 0.32
    for c, n in zip(clean, noisy, strict=True):
        np.testing.assert_array_equal(c["target"], n["target"])
        if n["instruction_is_wrong"]:
            assert n["caption"] in c["hard_negatives"] and c["caption"] not in n["hard_negatives"]
        else:
            assert n["caption"] == c["caption"] and n["hard_negatives"] == c["hard_negatives"]


def test_cosine_schedule_and_noising_closed_forms():
    a = np.asarray(alpha_bars())
    assert a.shape == (TIMESTEPS,) and np.all(np.diff(a) < 0) and 0.999 < a[0] < 1 and a[-1] < 1e-4
    s = 0.008
    f = lambda t: np.cos((t / TIMESTEPS + s) / (1 + s) * np.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(a[499], f(500) / f(0), rtol=1e-4)
    x0, eps = np.ones((2, 2, 2, 3), np.float32), np.full((2, 2, 2, 3), 2.0, np.float32)
    z = np.asarray(add_noise(x0, eps, jnp.array([0, 499])))
    np.testing.assert_allclose(z[1], np.sqrt(a[499]) + 2 * np.sqrt(1 - a[499]), rtol=1e-5)


@pytest.mark.parametrize("steps", [2, 5, 50])  # one step divides by sqrt(ᾱ_999) ~ 0.006: float32 rounding
def test_ddim_with_the_true_noise_returns_the_clean_image_clipped(steps):
    """A predictor that knows x0 gives back x0 from any noise in any number of steps, clipped to the bounds."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1.5, 1.5, (3, 4, 4, 3)).astype(np.float32)
    a = alpha_bars()
    oracle = lambda z, t: (z - jnp.sqrt(a[t])[:, None, None, None] * x0) / jnp.sqrt(1 - a[t])[:, None, None, None]  # noqa: E731
    out = ddim_sample(oracle, jnp.asarray(rng.normal(size=x0.shape), jnp.float32), steps, (-1.0, 1.0))
    np.testing.assert_allclose(np.asarray(out), np.clip(x0, -1, 1), atol=1e-4)


TEXT = dict(width=32, depth=1, heads=2, max_len=8, mlp_dim=0, activation="gelu_tanh", layer_norm_eps=1e-6,
            kind="clip", pool="last", eos_token_id=0, causal=True, dropout_rate=0.0)  # fmt: skip


def test_denoiser_starts_as_the_editor_that_changes_nothing_and_reads_the_instruction_unless_dropped():
    """At init (zero head) ε̂ is the noise z_t holds if the target were the source, clipped to ±5; then the output
    depends on the instruction, except where it is dropped."""
    model = EditDenoiser(TEXT, 20, width=16)
    rng = np.random.default_rng(0)
    z, source = (jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32) for _ in range(2))
    t, a, b = jnp.array([3, 700]), jnp.ones((2, 8), jnp.int32), jnp.full((2, 8), 2, jnp.int32)
    params = model.init(jax.random.PRNGKey(0), z, source, t, a)["params"]
    bar = np.asarray(alpha_bars())[np.asarray(t)][:, None, None, None]
    unedited = np.clip((np.asarray(z) - np.sqrt(bar) * np.asarray(source)) / np.sqrt(1 - bar), -5, 5)
    np.testing.assert_allclose(np.asarray(model.apply({"params": params}, z, source, t, a)), unedited, atol=1e-5)
    assert np.abs(unedited[0]).max() == 5 and np.abs(unedited[1]).max() < 5  # t = 3 clips, t = 700 does not
    params["head"]["kernel"] = jnp.asarray(rng.normal(size=params["head"]["kernel"].shape), jnp.float32)
    run = lambda tokens, dropped=None: np.asarray(model.apply({"params": params}, z, source, t, tokens, dropped))  # noqa: E731
    assert run(a).shape == (2, 8, 8, 3) and not np.allclose(run(a), run(b))
    dropped = jnp.array([True, False])
    np.testing.assert_array_equal(run(a, dropped)[0], run(b, dropped)[0])
    assert not np.allclose(run(a, dropped)[1], run(b, dropped)[1])


class _OffsetModel:
    """ε̂ = ε + s · δ · tokens[:, 0] for a zero target (z_t = sqrt(1 - ᾱ_t) ε), 0 offset where the instruction is
    dropped: d(c) = (s δ c)² exactly, whatever noise and step the loss draws."""

    delta = 0.1

    def apply(self, variables, z, source, t, tokens, dropped):
        eps = z / jnp.sqrt(1 - alpha_bars()[t])[:, None, None, None]
        offset = jnp.where(dropped, 0.0, self.delta * tokens[:, 0].astype(jnp.float32))
        return eps + variables["params"]["s"] * offset[:, None, None, None]


def _loss_config(**options):
    config = superedit.get_config()
    config.superedit.update({"triplet_start": 0, **options})
    return config


def _batch(right: int, wrong: int, b: int = 64):
    zeros = jnp.zeros((b, 4, 4, 3), jnp.float32)
    return {"image": zeros + 1, "target": zeros, "text": jnp.full((b, 3), right), "negative": jnp.full((b, 3), wrong)}


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_loss_is_noise_mse_plus_the_triplet_hinge_with_dropped_examples_adding_the_margin(dropout):
    config = _loss_config(margin=0.05, conditioning_dropout=dropout)
    batch, params = _batch(3, 2), {"s": jnp.float32(1.0)}
    loss, metrics = superedit_loss.superedit_loss(params, batch, {"step": jnp.int32(5)}, jax.random.PRNGKey(1),
                                                  model=_OffsetModel(), config=config)  # fmt: skip
    q = float(metrics["instruction_dropped"])
    assert (q == 0) if dropout == 0 else (0.25 < q < 0.55)  # 2p of the batch, drawn
    d_pos, d_neg = 0.3**2, 0.2**2
    hinge = max(d_pos - d_neg + 0.05, 0)
    expected = (1 - q) * d_pos + (1 - q) * hinge + q * 0.05
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["noise_mse"]), (1 - q) * d_pos, rtol=1e-5)


def test_stop_positive_takes_the_right_instruction_out_of_the_triplet_gradient():
    """L(s) = d+ + (d+ - d- + m) with d± = s² (δ c±)²: dL/ds = 2s(2(δc+)² - (δc-)²), or 2s((δc+)² - (δc-)²)
    when the triplet's d+ is a constant."""
    batch, d_pos, d_neg = _batch(3, 2), 0.3**2, 0.2**2
    for stop, expected in ((False, 2 * (2 * d_pos - d_neg)), (True, 2 * (d_pos - d_neg))):
        config = _loss_config(margin=1.0, conditioning_dropout=0.0, stop_positive=stop)

        def loss(p, config=config):
            return superedit_loss.superedit_loss(p, batch, {"step": jnp.int32(0)}, jax.random.PRNGKey(0),
                                                 model=_OffsetModel(), config=config)[0]  # fmt: skip

        np.testing.assert_allclose(float(jax.grad(loss)({"s": jnp.float32(1.0)})["s"]), expected, rtol=1e-5)


def test_the_triplet_counts_from_its_start_step_and_ip2p_has_none():
    batch, params, rng = _batch(3, 2), {"s": jnp.float32(1.0)}, jax.random.PRNGKey(0)
    config = _loss_config(margin=0.05, conditioning_dropout=0.0, triplet_start=10)
    for step, expected in ((9, 0.09), (10, 0.09 + 0.09 - 0.04 + 0.05)):
        loss, _ = superedit_loss.superedit_loss(params, batch, {"step": jnp.int32(step)}, rng, model=_OffsetModel(),
                                                config=config)  # fmt: skip
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    config = superedit.get_config("arm=ip2p")
    config.superedit.conditioning_dropout = 0.0
    loss, metrics = superedit_loss.superedit_loss(params, batch, {"step": jnp.int32(5000)}, rng, model=_OffsetModel(),
                                                  config=config)  # fmt: skip
    np.testing.assert_allclose(float(loss), 0.09, rtol=1e-5)
    assert "triplet" not in metrics
    assert int(superedit_loss.update_extra({"step": jnp.int32(4)}, params, None)["step"]) == 5


def test_batch_fields_draw_one_wrong_instruction_and_carry_the_edited_image():
    record = shape_edits.record(0, "train", 3)
    encode = lambda texts: np.array([[len(t)] for t in texts])  # noqa: E731
    drawn = {int(superedit_loss.batch_fields(record, np.random.default_rng(s), encode)["negative"][0])
             for s in range(40)}  # fmt: skip
    assert drawn == {len(t) for t in record["hard_negatives"]}
    np.testing.assert_array_equal(superedit_loss.batch_fields(record, np.random.default_rng(0), encode)["target"],
                                  record["target"])  # fmt: skip


def test_edit_scores_by_hand():
    """4 x 4 images: the edit changes pixels (0, 0) and (0, 1) to red."""
    source = np.zeros((1, 4, 4, 3), np.float32)
    target = source.copy()
    target[0, 0, :2] = (200, 0, 0)
    edited = source.copy()
    edited[0, 0, 1:3] = (190, 10, 0)  # one right, one changed that should not be; (0, 0) missed
    s = edit_scores(edited, source, target)
    assert s["iou"][0] == pytest.approx(1 / 3) and s["changed_right"][0] == 0.5
    assert s["kept"][0] == pytest.approx(13 / 14) and not s["correct"][0]
    perfect = edit_scores(target, source, target)
    assert perfect["iou"][0] == 1 and perfect["changed_right"][0] == 1 and perfect["correct"][0]


def test_guidance_moves_the_noise_away_from_the_null_instruction():
    """ε(c) = 1 and ε(∅) = 0.25 everywhere: scale s gives 0.25 + 0.75 s; 1 reads the instruction alone."""

    def predict(z, t, tokens, dropped):
        return jnp.full(z.shape, 0.25 if dropped is not None else 1.0)

    z, t, tokens = jnp.zeros((2, 4, 4, 3)), jnp.zeros((2,), jnp.int32), jnp.ones((2, 3), jnp.int32)
    for scale, expected in ((1.0, 1.0), (3.0, 2.5), (0.0, 0.25)):
        np.testing.assert_allclose(np.asarray(guided_noise(predict, z, t, tokens, scale)), expected)


class _LookupModel:
    """The denoiser of a perfect (or copying) editor: the noise that takes z_t to the pair's target (or source),
    found by matching the source among the held-out ones (params)."""

    def __init__(self, copy: bool):
        self.copy = copy

    def apply(self, variables, z, source, t, tokens, dropped=None):
        p = variables["params"]
        match = jnp.argmin(jnp.abs(source[:, None] - p["sources"][None]).sum(axis=(2, 3, 4)), axis=1)
        x0 = source if self.copy else p["targets"][match]
        a = alpha_bars()[t][:, None, None, None]
        return (z - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)


class _Tokens:
    def encode(self, texts, max_len):
        return np.array([[hash(t) % 97 + 1] * max_len for t in texts], np.int32)


@pytest.mark.parametrize("copy, guidance", [(False, 1.0), (True, 1.0), (False, 3.0)])
def test_evaluator_scores_a_perfect_editor_and_a_copier(copy, guidance):
    n = 30
    evaluator = EditEvaluator(_LookupModel(copy), _Tokens(), num_examples=n, batch_size=12, image_size=16, max_len=4,
                              sample_steps=4, text_guidance=guidance)  # fmt: skip
    records = [shape_edits.record(0, "test", i, 16) for i in range(n)]
    norm = lambda key: transforms.normalize_image(np.stack([r[key] for r in records]))  # noqa: E731
    got = evaluator.evaluate({"sources": jnp.asarray(norm("image")), "targets": jnp.asarray(norm("target"))})
    if copy:
        assert got["accuracy"] == 0 and got["iou"] == 0 and got["kept"] == 100 and got["changed_right"] == 0
    else:
        assert got["accuracy"] == got["iou"] == got["changed_right"] == got["kept"] == 100
        assert got["wrong_instruction_accuracy"] == 100  # it edits from the image alone
    assert got["preference"] == 0 and got["wrong_minus_right"] == 0  # the instruction changes nothing
    np.testing.assert_allclose(to_pixels(norm("image")), np.stack([r["image"] for r in records]), atol=1e-3)


def test_validation_names_the_fix_before_jax_starts():
    validate_config(superedit.get_config())
    validate_config(superedit.get_config("arm=ip2p"))
    for key, value, fragment in (
        ("model.kind", "two_tower", "set config.objective='superedit', config.model.kind='denoiser'"),
        ("data.name", "shapes", "config.data.name='shape_edits' together"),
        ("data.image_size", 15, "make it even"),
        ("superedit.margin", -1.0, "must be >= 0"),
        ("data.text_augmentation", "laclip", "no rewrites to sample"),
        ("data.crop_scale", (0.8, 1.0), "would misalign it with its edited image"),
    ):
        config = superedit.get_config()
        section, leaf = key.split(".")
        config[section][leaf] = value
        with pytest.raises(ConfigError, match=fragment):
            validate_config(config)
    with pytest.raises(ValueError, match="Unknown SuperEdit arm"):
        superedit.get_config("arm=none")


def _tiny(config):
    config.superedit.update(width=16, triplet_start=1)
    config.model.text.update(width=32, depth=1, heads=2, max_len=12)
    config.batch_size, config.optimizer.warmup_steps, config.data.train_size = 16, 0, 64
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = 3
    config.eval.num_examples, config.eval.batch_size = 24, 12
    config.evals.edits.sample_steps = 3
    return config


def test_superedit_trains_and_evaluates_end_to_end(tmp_path):
    """main's path: the pairs through grain, the triplet from step 1, the evaluator, the summary's rows."""
    from training.loop import train_and_evaluate
    from training.summary import format_summary

    config = _tiny(superedit.get_config())
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    got = summary["eval"]
    assert 0 <= got["edits/accuracy"] <= 100 and 0 <= got["edits/preference"] <= 100
    rows = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    weights = [r["train/triplet_weight"] for r in rows if "train/triplet_weight" in r]
    assert weights == [pytest.approx(2 / 3)]  # the mean over the logged steps 0, 1, 2: off, then on from step 1
    table = format_summary(config, summary)
    assert f"{got['edits/accuracy']:.1f}% right (recolour" in table and "predicts the noise better in" in table


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_superedit_steps_on_8_devices_equal_one_device():
    """The denoiser and both passes of the triplet train over a data x fsdp mesh as on one device."""
    from tiny_training import assert_same_params, run_steps

    from training.mesh import make_mesh

    config = _tiny(superedit.get_config())
    config.superedit.conditioning_dropout = 0.1
    rng = np.random.default_rng(0)
    records = [shape_edits.record(0, "train", i) for i in range(32)]
    batches = [
        {
            "image": np.stack([r["image"] for r in records[i : i + 16]]),
            "target": np.stack([r["target"] for r in records[i : i + 16]]),
            "text": rng.integers(1, 60, (16, 12)).astype(np.int32),
            "negative": rng.integers(1, 60, (16, 12)).astype(np.int32),
        }
        for i in (0, 16)
    ]
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches)
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose(m["loss"], r["loss"], rtol=1e-5)
        # the hinge is a difference of two near-equal errors (~1e-3): summation order moves it by ~1e-7
        np.testing.assert_allclose(m["triplet"], r["triplet"], atol=1e-6)
    assert_same_params(params, ref_params)


def test_a_comparison_of_superedit_runs_pairs_its_edit_columns():
    from launch.results import paired_table, results_table

    run = lambda acc, pref: {"wall_time_s": 60.0, "eval": {"edits/accuracy": acc, "edits/preference": pref}}  # noqa: E731
    results = {"superedit": [run(10.0, 80.0), run(12.0, 81.0)], "ip2p": [run(9.0, 70.0), run(10.0, 72.0)]}
    header = results_table(results).splitlines()[0]
    assert header.split("|")[4:6] == [" edits right % ", " recolour % "]
    paired = paired_table(results, "superedit", [0, 1]).splitlines()
    assert "edits right %" in paired[1] and "prefers right %" in paired[1]
    cells = paired[3].split("|")
    assert cells[1].strip() == "ip2p" and cells[2].strip().startswith("-1.5") and cells[-2].strip().startswith("-9.5")
