"""The ten reference operators on a small bundled photo: shape, range, and one property each must have."""

from __future__ import annotations

import numpy as np
import pytest

from convpress.core.errors import ConfigError, InputError
from convpress.fip.operators import OPERATORS, Operator, apply_reference, get_operator, operator_names, register_operator
from convpress.fip.operators._common import guided_filter, luminance

NAMES = ["rof", "tvl1", "l0", "rtv", "wls", "detail", "style", "dehaze-dc", "dehaze-nl", "pencil"]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """chelsea at 96x128 (H, W, 3) float32: small enough for RTV and WLS in well under a second."""
    import cv2

    from convpress.data.photos import bundled_photo

    img = bundled_photo("chelsea").permute(1, 2, 0).numpy()
    return cv2.resize(img, (128, 96), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def outputs(photo: np.ndarray) -> dict[str, np.ndarray]:
    return {n: apply_reference(n, photo) for n in operator_names()}


def _tv(a: np.ndarray) -> float:
    return float(np.abs(np.diff(a, axis=0)).sum() + np.abs(np.diff(a, axis=1)).sum())


def _contrast(a: np.ndarray) -> float:
    """RMS contrast of the luminance."""
    return float(luminance(a).std())


def test_registry_lists_the_ten_operators() -> None:
    # registration order: the operator modules in name order (dehaze, pencil, smoothing, tone), each in definition order
    assert operator_names() == ["dehaze-dc", "dehaze-nl", "pencil", "rof", "tvl1", "l0", "rtv", "wls", "detail", "style"]
    assert sorted(operator_names()) == sorted(NAMES)


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_operator("l0", "again")(lambda x: x)
    with pytest.raises(ConfigError, match="unknown operator 'l1'.*did you mean"):
        get_operator("l1")


@pytest.mark.parametrize("name", operator_names())  # every registered operator, the moment it is registered
def test_shape_range_and_change(name: str, photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    out = outputs[name]
    assert out.shape == photo.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.isfinite(out).all()
    assert np.abs(out - photo).mean() > 2e-3  # every operator changes the photo


@pytest.mark.parametrize("name", ["rof", "tvl1", "rtv"])
def test_tv_smoothers_reduce_total_variation(name: str, photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    assert _tv(outputs[name]) < 0.8 * _tv(photo)


def test_l0_keeps_far_fewer_nonzero_gradients(photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    def nonzero(a: np.ndarray) -> float:
        g = np.abs(np.diff(a, axis=1)).max(axis=2)
        return float((g > 1e-2).mean())

    # measured: 0.82 of the photo's pixels have a gradient above 0.01, 0.26 after L0 smoothing
    assert nonzero(photo) > 0.7
    assert nonzero(outputs["l0"]) < 0.4 * nonzero(photo)


def test_l0_is_stronger_with_larger_lambda(photo: np.ndarray) -> None:
    weak, strong = apply_reference("l0", photo, lam=0.005), apply_reference("l0", photo, lam=0.05)
    assert _tv(strong) < _tv(weak)


def test_rtv_removes_texture_more_than_rof(photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    assert _tv(outputs["rtv"]) < _tv(outputs["rof"])


@pytest.mark.parametrize("name", ["wls", "detail"])
def test_detail_enhancers_raise_fine_detail(name: str, photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    # high-pass energy (image minus its 3x3 box blur) grows by at least 30 %
    import cv2

    def hp(a: np.ndarray) -> float:
        lum = luminance(a)
        return float(np.abs(lum - cv2.blur(lum, (3, 3))).mean())

    assert hp(outputs[name]) > 1.3 * hp(photo)


def test_detail_is_as_strong_as_its_paper(photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    # Paris et al.'s "detail increased" look (alpha 0.25), far from the old default (alpha 0.5, a
    # gentle look close to the input)
    import cv2

    def hp(a: np.ndarray) -> float:
        lum = luminance(a)
        return float(np.abs(lum - cv2.blur(lum, (3, 3))).mean())

    # measured on this 96x128 photo: 1.90x with the noise guard of version 2 (2.34x without), while
    # the gentle alpha 0.5 gives 1.42x; differences below 1% are not boosted, so the fine band of a
    # small photo grows by less than its detail does
    assert hp(outputs["detail"]) > 1.7 * hp(photo)
    assert hp(apply_reference("detail", photo, alpha=0.5)) < 1.6 * hp(photo)


def test_detail_does_not_amplify_noise_in_flat_regions() -> None:
    # Paris et al.'s noise guard: at a reference level of the fast filter (5/11 of 12), the bare
    # |d|^0.25 curve has an infinite slope at 0 and boosted noise of std 0.003 twentyfold (measured
    # 0.061); with the guard, differences below 1% are left alone
    rng = np.random.default_rng(0)
    flat = np.full((128, 128, 3), 5 / 11, np.float32) + rng.normal(0, 0.003, (128, 128, 1)).astype(np.float32)
    noise_in = luminance(flat).std()
    assert luminance(apply_reference("detail", flat)).std() < 1.5 * noise_in
    assert luminance(apply_reference("detail", flat, noise=0.0)).std() > 5 * noise_in
    # a detail well above the noise level is still boosted (step of 0.05: measured 0.085 across)
    square = np.full((128, 128, 3), 0.5, np.float32)
    square[48:80, 48:80] += 0.05
    lum = luminance(apply_reference("detail", square))
    assert lum[64, 64] - lum[10, 10] > 1.5 * 0.05


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("detail", {"sigma_r": 0.0}, "need sigma_r > 0"),
        ("detail", {"alpha": -0.5}, "alpha > 0"),
        ("detail", {"beta": -1.0}, "beta >= 0"),
        ("detail", {"noise": -0.01}, "noise < sigma_r / 2"),
        ("detail", {"noise": 0.1}, "noise < sigma_r / 2"),
        ("detail", {"alpha": float("nan")}, "alpha must be a finite number"),
        ("style", {"sigma_r": float("inf")}, "sigma_r must be a finite number"),
        ("style", {"contrast": 0.0}, "contrast > 0"),
        ("style", {"saturation": -1.0}, "saturation >= 0"),
    ],
)
def test_local_laplacian_settings_are_checked(photo: np.ndarray, name: str, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}: .*{match}"):
        apply_reference(name, photo, **params)


def _band(a: np.ndarray, k1: int, k2: int) -> float:
    """Mean luminance detail between box blurs of sizes k1 and k2 (k1 = 1: the image itself)."""
    import cv2

    lum = luminance(a)
    return float(np.abs((lum if k1 == 1 else cv2.blur(lum, (k1, k1))) - cv2.blur(lum, (k2, k2))).mean())


def test_wls_exaggerates_detail_at_several_scales_as_its_paper(photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    # the average of Farbman et al.'s fine, medium and coarse looks: detail grows at every scale
    # (measured here: 2.4x fine, 1.8x medium, 1.4x coarse); version 1, the fine look alone, left
    # the coarse band almost unchanged
    assert _band(outputs["wls"], 1, 3) > 1.8 * _band(photo, 1, 3)
    assert _band(outputs["wls"], 3, 9) > 1.5 * _band(photo, 3, 9)
    assert _band(outputs["wls"], 9, 27) > 1.2 * _band(photo, 9, 27)


def test_wls_with_flat_curves_returns_its_input(photo: np.ndarray) -> None:
    # slopes 0 leave each layer as it is (Farbman's convention) and the base's curve is centred on
    # L = 56: base + medium + fine detail must add back up to the lightness, so the round trip
    # through CIELAB is the identity
    out = get_operator("wls")(photo, looks=[[0, 0, 0, 1.0]], saturation=1.0)
    assert np.abs(out - photo).max() < 1e-4


def test_wls_parameters_are_checked(photo: np.ndarray) -> None:
    op = get_operator("wls")
    for lams in [(0.5,), (0.5, 0.125), (0.0, 0.5), (0.125, float("inf"))]:
        with pytest.raises(ConfigError, match="lams must be two WLS weights"):
            op(photo, lams=lams)
    for looks in [[], [[25, 1, 1]], [[25, 1, 1, 1, 1]]]:
        with pytest.raises(ConfigError, match="lists of 4 numbers"):
            op(photo, looks=looks)
    for looks in [[[25, -1, 1, 1]], [[25, 1, 1, 0]], [[float("nan"), 1, 1, 1]]]:
        with pytest.raises(ConfigError, match="slopes must be >= 0"):
            op(photo, looks=looks)
    with pytest.raises(ConfigError, match="must be numbers"):
        op(photo, looks=[["a", 1, 1, 1]])
    with pytest.raises(ConfigError, match="saturation must be >= 0"):
        op(photo, saturation=-1.0)


def test_style_raises_contrast_and_lowers_saturation(photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    out = outputs["style"]
    assert _contrast(out) > 1.3 * _contrast(photo)
    sat = lambda a: float((a.max(axis=2) - a.min(axis=2)).mean())  # noqa: E731
    assert sat(out) < sat(photo)


def _hazy(photo: np.ndarray, t: float = 0.5) -> np.ndarray:
    """The haze model I = J t + A (1 - t) with airlight 0.9."""
    return (photo * t + 0.9 * (1 - t)).astype(np.float32)


@pytest.mark.parametrize("name", ["dehaze-dc", "dehaze-nl"])
def test_dehazing_raises_contrast_of_a_hazy_photo(name: str, photo: np.ndarray) -> None:
    hazy = _hazy(photo)
    out = apply_reference(name, hazy)
    assert _contrast(out) > 1.4 * _contrast(hazy)
    # and brings the photo closer to the haze-free original
    assert np.abs(out - photo).mean() < np.abs(hazy - photo).mean()


def test_dehaze_nl_stretches_for_display_and_leaves_a_little_haze(photo: np.ndarray) -> None:
    hazy = _hazy(photo)
    out = apply_reference("dehaze-nl", hazy)
    # Berman's display stretch clips about 0.5% of the values at each end (a channel's limits are
    # pulled towards the others', so a channel may clip less)
    assert 0.001 < (out <= 0).mean() < 0.02 and 0.001 < (out >= 1).mean() < 0.02
    plain = apply_reference("dehaze-nl", hazy, stretch=(0.0, 1.0))
    assert plain.min() == 0.0 and plain.max() == pytest.approx(1.0)  # (0, 1) only normalises
    # leave_haze 1.06 keeps some haze: removing all of it (1.0) gives a darker, more contrasted result
    unstretched = {k: apply_reference("dehaze-nl", hazy, leave_haze=k, stretch=(0.0, 1.0)) for k in (1.0, 1.06)}
    assert _contrast(unstretched[1.0]) > _contrast(unstretched[1.06])


def test_reliable_wls_fills_unreliable_pixels_from_their_neighbours_but_not_across_edges() -> None:
    from convpress.fip.operators.dehaze import _reliable_wls

    h, w = 40, 60
    guide = np.zeros((h, w))
    guide[:, 30:] = 1.0  # one strong edge
    t = np.where(guide > 0, 0.8, 0.3)
    weight = np.ones((h, w))
    hole = (slice(15, 25), slice(10, 20))  # unreliable pixels left of the edge, holding a wrong value
    t_bad = t.copy()
    t_bad[hole] = 1.0
    weight[hole] = 0.0
    out = _reliable_wls(t_bad, weight, guide, lam=0.1)
    assert np.abs(out[hole] - 0.3).max() < 0.02  # filled from reliable neighbours, not from the bad value
    assert np.abs(out[:, 35:] - 0.8).max() < 0.02  # the edge holds: the right side keeps its value
    # where the guide is flat the smoothness term dominates (lam / 1e-5); where the guide marks the
    # region off, reliable values inside it stay
    weight[hole] = 1.0
    weight[-1, 0] = 0.0  # (weights are normalised by their range: all-equal weights would all become 0)
    marked = guide.copy()
    marked[hole] = 0.5
    assert _reliable_wls(t_bad, weight, marked, lam=0.1)[hole].min() > 0.85  # (0.36 with the flat guide)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lines": 1}, "lines must be an integer >= 2"),
        ({"lines": 2.5}, "lines must be a whole number"),
        ({"t_min": 0.0}, "t_min must be in"),
        ({"lam": float("nan")}, "lam must be a finite number"),
        ({"leave_haze": 0.9}, "leave_haze must be in"),
        ({"leave_haze": 20.0}, "leave_haze must be in"),
        ({"stretch": (0.9, 0.1)}, "stretch must be two fractions"),
        ({"stretch": (0.1,)}, "stretch must be two fractions"),
        ({"stretch": ("a", 1)}, "must be numbers"),
    ],
)
def test_dehaze_nl_refuses_impossible_settings(photo: np.ndarray, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=f"dehaze-nl: .*{match}"):
        get_operator("dehaze-nl")(photo, **params)


def test_pencil_is_grey_and_darkens_edges(photo: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
    out = outputs["pencil"]
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 1], out[:, :, 2])
    lum = luminance(photo)
    g = np.hypot(np.diff(lum, axis=1)[:-1], np.diff(lum, axis=0)[:, :-1])
    strong, flat = g > np.quantile(g, 0.95), g < np.quantile(g, 0.5)
    assert out[:-1, :-1, 0][strong].mean() < out[:-1, :-1, 0][flat].mean()


def test_pencil_tones_follow_lu_et_als_distribution_so_the_drawing_is_mostly_paper(photo: np.ndarray) -> None:
    from convpress.fip.operators.pencil import _target_tone_cdf

    v = np.linspace(0, 1, 256)
    cdf = _target_tone_cdf(256)
    p = np.diff(cdf, prepend=0.0)
    # the mean of 0.52 Laplacian(255 - 9) + 0.37 uniform[105, 225] + 0.11 Gaussian(90), on a 0-255 scale
    assert (p * v).sum() == pytest.approx((0.52 * (255 - 9) + 0.37 * 165 + 0.11 * 90) / 255, abs=0.01)
    assert cdf[np.searchsorted(v, 225 / 255)] == pytest.approx(0.48, abs=0.02)  # about half the tones are near-white paper
    tone = OPERATORS.get("pencil")(photo, texture=False, stroke_weight=0.0)[:, :, 0]
    assert np.median(tone) > 0.8  # the tones of a photo's drawing are mostly light (before 2026-12-04: 0.5)


def test_pencil_texture_is_one_tile_repeated_and_its_exponent_carries_the_hatching(photo: np.ndarray) -> None:
    from convpress.fip.operators.pencil import TEXTURE_TILE, pencil_exponent, pencil_texture

    t = TEXTURE_TILE
    tex = pencil_texture(t + 40, 2 * t + 7)
    assert np.array_equal(tex[:40], tex[t:]) and np.array_equal(tex[:, :t], tex[:, t : 2 * t])
    assert np.array_equal(pencil_texture(10, 20), tex[:10, :20])  # the same at every image size
    assert 0.55 <= tex.min() and tex.max() <= 0.95 + 1e-6
    op = get_operator("pencil")
    from convpress.data.photos import bundled_photo
    from convpress.fip.pairs import resize_long_side

    larger = resize_long_side(bundled_photo("astronaut").permute(1, 2, 0).numpy(), 384)  # hatching needs room
    hatched, flat = op(larger)[:, :, 0], op(larger, texture=False)[:, :, 0]

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(10 * np.log10(1 / np.mean((a - b) ** 2)))

    # the flat-toned drawing misses the hatching; raised to the exponent it has most of it back
    # (measured +5.3 dB; with the tones of Lu et al.'s distribution most of the drawing is paper,
    # where hatching is faint, so the flat drawing is already within 28 dB of the hatched one)
    rebuilt = np.clip(flat, 1e-3, 1) ** pencil_exponent(*flat.shape)
    assert psnr(rebuilt, hatched) > psnr(flat, hatched) + 3


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(line_length=1), "line_length"),
        (dict(line_length=7.5), "line_length"),
        (dict(directions=0), "directions"),
        (dict(stroke_weight=-1.0), "stroke_weight"),
        (dict(stroke_weight=float("nan")), "stroke_weight"),
        (dict(texture="yes"), "texture"),
    ],
)
def test_pencil_refuses_settings_that_cannot_draw(photo: np.ndarray, params: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=f"pencil: {match}"):
        get_operator("pencil")(photo, **params)


@pytest.mark.parametrize("name", operator_names())
def test_every_operator_refuses_values_of_the_wrong_kind(name: str, photo: np.ndarray) -> None:
    # one ConfigError line naming the parameter, never a traceback from deep inside SciPy or OpenCV
    # (before 2026-12-05 a string for rof's weight or tvl1's lambda_ raised TypeError)
    op = get_operator(name)
    for key, default in op.params.items():
        if isinstance(default, bool):
            with pytest.raises(ConfigError, match=f"^{name}: {key} must be true or false"):
                op(photo, **{key: "yes"})
        elif isinstance(default, (int, float)):
            with pytest.raises(ConfigError, match=f"^{name}: {key} must be a number"):
                op(photo, **{key: "x"})
            with pytest.raises(ConfigError, match=f"^{name}: {key} must be a number"):
                op(photo, **{key: True})
            with pytest.raises(ConfigError, match=f"^{name}: {key} must be a finite number"):
                op(photo, **{key: float("nan")})
            if isinstance(default, int):
                with pytest.raises(ConfigError, match=f"^{name}: {key} must be a whole number"):
                    op(photo, **{key: default + 0.5})
        else:
            with pytest.raises(ConfigError, match=f"^{name}: {key} must be a list"):
                op(photo, **{key: 3})


def test_whole_number_floats_are_accepted_for_integer_parameters(photo: np.ndarray) -> None:
    op = get_operator("tvl1")
    assert op.check_params({"iterations": 10.0}) == {"iterations": 10}
    np.testing.assert_array_equal(op(photo, iterations=10.0), op(photo, iterations=10))


def test_guided_filter_preserves_a_constant_and_an_edge() -> None:
    guide = np.zeros((32, 32), np.float32)
    guide[:, 16:] = 1.0
    np.testing.assert_allclose(guided_filter(guide, np.full((32, 32), 0.3, np.float32), 4, 1e-3), 0.3, atol=1e-5)
    out = guided_filter(guide, guide, 4, 1e-6)
    np.testing.assert_allclose(out, guide, atol=1e-3)


def test_bad_images_and_parameters_are_refused(photo: np.ndarray) -> None:
    op: Operator = OPERATORS.get("rof")
    with pytest.raises(InputError, match="RGB"):
        op(photo[:, :, 0])
    with pytest.raises(InputError, match="NaN"):
        op(np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(InputError, match="at least 16x16"):
        get_operator("detail")(photo[:8, :8])
    with pytest.raises(ConfigError, match="no parameter"):
        op(photo, strength=3)
