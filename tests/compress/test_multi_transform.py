"""Multi-transform inference: transforms, their inverses, and the per-task aggregation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp


def _fcn() -> nn.Module:
    """A tiny fully convolutional per-pixel classifier: (N, 3, H, W) -> (N, 4, H, W) logits."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.Tanh(), nn.Conv2d(4, 4, 1))


class _Refuses(nn.Module):
    """A model that fails the test if it is ever run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the model ran before the transforms were checked")


def test_dense_predictions_are_mapped_back_through_flip_and_shift() -> None:
    # a per-pixel model commutes with flips and shifts, so every inverted view must equal the plain one
    model, x = _fcn(), torch.rand(2, 3, 9, 11)
    plain = model(x).softmax(1)
    for t in (cp.HFlip(), cp.Shift(2, -1), cp.Shift(-3, 2)):
        agg = cp.multi_transform_predict(model, x, [cp.Identity(), t], task="segmentation")
        assert agg.shape == (2, 4, 9, 11)
        torch.testing.assert_close(agg, plain, atol=1e-6, rtol=0)


def test_a_shift_alone_leaves_unseen_pixels_uniform_and_the_rest_exact() -> None:
    model, x = _fcn(), torch.rand(1, 3, 6, 8)
    agg = cp.multi_transform_predict(model, x, [cp.Shift(3, 0)], task="segmentation")
    plain = model(x).softmax(1)
    torch.testing.assert_close(agg[..., :5], plain[..., :5], atol=1e-6, rtol=0)  # columns 0..4 were seen at 3..7
    torch.testing.assert_close(agg[..., 5:], torch.full_like(agg[..., 5:], 0.25))


def test_scale_and_zoom_come_back_at_the_input_size_close_to_the_plain_prediction() -> None:
    model = _fcn()
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=(32, 32), mode="bilinear")  # smooth, so resizing loses little
    plain = model(x).softmax(1)
    for t in (cp.Scale(0.5), cp.Scale(1.5), cp.Zoom(1.1), cp.Zoom(0.9)):
        agg = cp.multi_transform_predict(model, x, [t], task="segmentation")
        assert agg.shape == plain.shape
        inner = (slice(None), slice(None), slice(4, 28), slice(4, 28))
        assert (agg[inner] - plain[inner]).abs().max() < 0.05, t
    assert cp.Scale(0.5).apply(x).shape[-2:] == (16, 16) and cp.Zoom(1.1).apply(x).shape == x.shape


def test_classification_averages_class_probabilities() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    x = torch.rand(4, 3, 8, 8)
    ts = [cp.Identity(), cp.HFlip(), cp.Shift(1, 1)]
    got = cp.multi_transform_predict(model, x, ts)
    want = torch.stack([model(t.apply(x)).softmax(1) for t in ts]).mean(0)
    torch.testing.assert_close(got, want)
    assert got.shape == (4, 5) and torch.allclose(got.sum(1), torch.ones(4))


def test_a_user_transform_with_an_inverse_works_for_dense_outputs() -> None:
    model, x = _fcn(), torch.rand(1, 3, 5, 7)
    vflip = cp.UserTransform(lambda t: t.flip(-2), invert=lambda p, size: p.flip(-2), name="vflip")
    torch.testing.assert_close(cp.multi_transform_predict(model, x, [vflip], task="segmentation"), model(x).softmax(1), atol=1e-6, rtol=0)
    # the same transform with a wrong inverse gives a different answer (the inverse is really used)
    wrong = cp.UserTransform(lambda t: t.flip(-2), invert=lambda p, size: p, name="wrong")
    assert not torch.allclose(cp.multi_transform_predict(model, x, [wrong], task="segmentation"), model(x).softmax(1), atol=1e-3)


def test_a_callable_aggregator_gets_one_raw_output_per_transform() -> None:
    model, x = _fcn(), torch.rand(1, 3, 4, 4)
    seen = {}

    def boxes(outputs: list[torch.Tensor], transforms: list[cp.Shift], inputs: torch.Tensor) -> int:
        seen["n"], seen["shapes"] = len(outputs), {tuple(o.shape) for o in outputs}
        return 42

    assert cp.multi_transform_predict(model, x, [cp.Identity(), cp.Scale(2.0)], task=boxes) == 42
    assert seen == {"n": 2, "shapes": {(1, 4, 4, 4), (1, 4, 8, 8)}}


@pytest.mark.parametrize(
    "transforms, task, match",
    [
        ([cp.UserTransform(lambda t: t.roll(1, -1), name="roll")], "segmentation", "cannot be inverted"),
        ([cp.Identity(), cp.UserTransform(lambda t: t, name="crop")], "segmentation", "cannot be inverted"),
        ([cp.UserTransform(lambda t: t, invert=lambda p, s: p, invariant=False, name="rot")], "classification", "do not keep"),
        ([], "classification", "non-empty"),
        ([cp.Identity()], "detection", "unknown task"),
        (["flip"], "classification", "not a Transform"),
    ],
)
def test_transforms_that_do_not_fit_the_task_are_refused_before_the_model_runs(transforms: list, task: str, match: str) -> None:
    with pytest.raises(cp.ConfigError, match=match):
        cp.multi_transform_predict(_Refuses(), torch.rand(1, 3, 4, 4), transforms, task=task)


def test_bad_transform_settings_and_outputs() -> None:
    for bad in (lambda: cp.Scale(0), lambda: cp.Zoom(-1.0), lambda: cp.Shift(0.5, 0)):
        with pytest.raises(cp.ConfigError):
            bad()
    with pytest.raises(cp.InputError, match=r"\(N, K\)"):
        cp.multi_transform_predict(_fcn(), torch.rand(1, 3, 4, 4), [cp.Identity()], task="classification")
    with pytest.raises(cp.InputError, match="N, C, H, W"):
        cp.multi_transform_predict(_fcn(), torch.rand(3, 4, 4), [cp.Identity()], task="segmentation")
