"""Hard pseudo-labels: selection rules and the report."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convpress as cp
from convpress.compress.pseudo_labels import labelled_stats


class _Lookup(nn.Module):
    """Classification 'teacher' whose logits are the first K input pixels: (N, 1, 2, 2) -> (N, 4)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def _unlabelled() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, 4, generator=g) * 3
    truth = logits.argmax(1)
    truth[::5] = (truth[::5] + 1) % 4  # every fifth prediction is wrong
    return logits.view(40, 1, 2, 2), truth


def test_confidence_keeps_exactly_the_confident_labels_and_reports_their_accuracy() -> None:
    x, y = _unlabelled()
    res = cp.pseudo_label(_Lookup(), [(x[:25], y[:25]), (x[25:], y[25:])], rule=cp.Confidence(0.8))
    prob = x.flatten(1).softmax(1)
    keep = prob.max(1).values >= 0.8
    assert torch.equal(res.labels, prob.argmax(1)[keep]) and torch.equal(res.inputs, x[keep])
    rep = res.report
    assert (rep.images, rep.candidates, rep.kept) == (40, 40, int(keep.sum()))
    assert rep.accuracy_all == pytest.approx(80.0)
    assert rep.accuracy == pytest.approx(100.0 * float((prob.argmax(1) == y)[keep].float().mean()))
    assert rep.threshold >= 0.8 and sum(rep.per_class) == rep.kept
    assert cp.pseudo_label(_Lookup(), [x]).report.accuracy is None  # no ground truth, no accuracy


def test_keep_fraction_per_class_follows_the_labelled_class_balance() -> None:
    x, _ = _unlabelled()
    stats = labelled_stats(torch.tensor([0] * 6 + [1] * 2 + [2] * 1 + [3] * 1), 4)
    rep = cp.pseudo_label(_Lookup(), [x], rule=cp.KeepFraction(0.5, per_class=True), stats=stats).report
    pred = x.flatten(1).argmax(1)
    want = [min(int((pred == c).sum()), round(0.5 * 40 * share)) for c, share in enumerate([0.6, 0.2, 0.1, 0.1])]
    assert rep.per_class == want
    plain = cp.pseudo_label(_Lookup(), [x], rule=cp.KeepFraction(0.5)).report
    assert plain.kept == 20


def test_match_rate_keeps_the_labelled_annotated_fraction_of_pixels() -> None:
    torch.manual_seed(0)
    fcn = nn.Conv2d(1, 3, 1)
    x = torch.randn(4, 1, 6, 6)
    lab = torch.randint(0, 3, (2, 6, 6))
    lab[:, :3] = 255  # half the labelled pixels are unannotated
    stats = labelled_stats(lab, 3)
    res = cp.pseudo_label(fcn, [x], [cp.Identity(), cp.HFlip()], task="segmentation", rule=cp.MatchRate(), stats=stats)
    assert res.labels.shape == (4, 6, 6) and res.report.kept == 72 == int((res.labels != 255).sum())
    conf = cp.multi_transform_predict(fcn, x, [cp.Identity(), cp.HFlip()], task="segmentation").max(1).values
    assert conf[res.labels != 255].min() >= conf[res.labels == 255].max()
    assert cp.MatchRate.threshold_for(torch.tensor([0.9, 0.8, 0.3, 0.7, 0.1]), images=2, per_image=1.5) == pytest.approx(0.7)


def test_rules_that_do_not_apply_and_empty_sets_are_refused() -> None:
    x, _ = _unlabelled()
    with pytest.raises(cp.ConfigError, match="does not apply to classification"):
        cp.pseudo_label(_Lookup(), [x], rule=cp.MatchRate())
    with pytest.raises(cp.ConfigError, match="empty"):
        cp.pseudo_label(_Lookup(), [])
    with pytest.raises(cp.ConfigError, match="empty"):
        cp.pseudo_label(_Lookup(), [x[:0]])
    for bad in (lambda: cp.Confidence(0.0), lambda: cp.KeepFraction(1.5), lambda: cp.MatchRate(rate=2.0)):
        with pytest.raises(cp.ConfigError):
            bad()
