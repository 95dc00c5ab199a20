import numpy as np

from input_pipeline import transforms


def test_laclip_sampling_is_uniform_over_original_and_rewrites():
    rng = np.random.default_rng(0)
    rewrites = ("rewrite one", "rewrite two", "rewrite three", "rewrite four")
    draws = [transforms.sample_caption("the original", rewrites, rng) for _ in range(20_000)]
    frequency = draws.count("the original") / len(draws)
    assert abs(frequency - 1 / 5) < 0.015  # binomial std ~0.003
    for r in rewrites:
        assert abs(draws.count(r) / len(draws) - 1 / 5) < 0.015


def test_laclip_falls_back_to_original_for_short_rewrites():
    rng = np.random.default_rng(0)
    rewrites = ("shapes", "", "two words", "x")
    draws = [transforms.sample_caption("the original", rewrites, rng) for _ in range(10_000)]
    # Three of five candidates have < 2 words and become the original: P = 4/5.
    assert abs(draws.count("the original") / len(draws) - 4 / 5) < 0.02
    assert set(draws) == {"the original", "two words"}


def test_rewrite_fraction_scales_the_chance_of_a_rewrite():
    rng = np.random.default_rng(0)
    rewrites = ("rewrite one", "rewrite two", "rewrite three", "rewrite four")
    for fraction, original in ((0.0, 1.0), (0.5, 1 - 0.5 * 4 / 5), (1.0, 1 / 5)):
        draws = [transforms.sample_caption("the original", rewrites, rng, fraction) for _ in range(20_000)]
        assert abs(draws.count("the original") / len(draws) - original) < 0.015, fraction
        for r in rewrites:  # the rewrites stay equally likely among themselves
            assert abs(draws.count(r) / len(draws) - (1 - original) / 4) < 0.015, (fraction, r)


def test_rewrite_warmup_rises_linearly_then_stays_at_one():
    assert [transforms.rewrite_fraction_at(p, 200) for p in (0, 50, 100, 199, 200, 10**9)] == [
        0.0, 0.25, 0.5, 0.995, 1.0, 1.0,
    ]  # fmt: skip
    assert transforms.rewrite_fraction_at(0, 0) == 1.0  # no warm-up: the paper's draw from the start


def test_full_crop_is_identity_and_small_crop_zooms():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    same = transforms.random_resized_crop(image, np.random.default_rng(1), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_allclose(same, image, atol=1e-4)
    # A 2x2 checkerboard of constant quadrants: a crop of the top-left quarter is constant.
    board = np.zeros((16, 16, 3), np.uint8)
    board[:8, :8] = 200
    rng = np.random.default_rng(2)
    crop = transforms.random_resized_crop(board, rng, scale=(0.01, 0.01), ratio=(1.0, 1.0))
    assert crop.shape == (16, 16, 3)
    assert np.ptp(crop) < 1e-3, "a 1.6-pixel crop inside one quadrant is a constant image"


def test_crop_of_a_wide_image_resizes_once_to_the_requested_square():
    # 16 x 32 image whose middle 16 columns are 200 and outer columns 0: its central square is constant.
    wide = np.zeros((16, 32, 3), np.uint8)
    wide[:, 8:24] = 200
    # (At the same scale: a downscale's filter would also read pixels just outside the box.)
    np.testing.assert_array_equal(transforms.central_square(wide, 16), np.full((16, 16, 3), 200, np.uint8))
    # A square crop of the whole area cannot fit a 16 x 32 image: it falls back to the central square.
    rng = np.random.default_rng(0)
    fallback = transforms.random_resized_crop(wide, rng, scale=(1.0, 1.0), ratio=(1.0, 1.0), size=16)
    np.testing.assert_array_equal(fallback, np.full((16, 16, 3), 200, np.uint8))
    # Crops of a quarter of the area land anywhere on the whole image, each resized to 8 x 8.
    crops = [
        transforms.random_resized_crop(wide, rng, scale=(0.25, 0.25), ratio=(1.0, 1.0), size=8)
        for rng in map(np.random.default_rng, range(40))
    ]
    assert {c.shape for c in crops} == {(8, 8, 3)}
    assert min(c.mean() for c in crops) < 100 < 200 - 1e-6 <= max(c.mean() for c in crops) + 1e-6


def test_normalisation_uses_clip_statistics():
    image = np.full((2, 2, 3), 255, np.uint8)
    expected = (1.0 - np.array([0.48145466, 0.4578275, 0.40821073])) / np.array([0.26862954, 0.26130258, 0.27577711])
    np.testing.assert_allclose(transforms.normalize_image(image)[0, 0], expected, rtol=1e-6)
