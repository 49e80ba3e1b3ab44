"""Data Distillation for segmentation: teacher, dense pseudo-labels, mixed batches, resume, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import convpress as cp
from convpress.compress.multi_transform import HFlip, Identity, UserTransform
from convpress.seg.data import IGNORE_INDEX, DemoDigits
from convpress.seg.distill import distill_segmenter
from convpress.seg.train import SegTrainConfig, train_segmenter

TINY = {"model": "shuffleseg", "model_kwargs": {"width": 0.25}, "crop": (32, 32), "epochs": 1, "steps": 2, "batch": 2, "num_classes": 11}
KW = {"size": (32, 48), "scale": (12, 24)}


def _data() -> tuple[DemoDigits, DemoDigits, list[tuple[torch.Tensor, torch.Tensor]]]:
    unlabelled = DemoDigits("train", count=4, seed=7, **KW)  # type: ignore[arg-type]
    return DemoDigits("train", count=6, **KW), DemoDigits("val", count=2, **KW), [unlabelled[i] for i in range(4)]  # type: ignore[arg-type]


class _Counting:
    """Samples that count how often they are read."""

    def __init__(self, samples: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.samples, self.reads = samples, 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.reads += 1
        return self.samples[i]


def test_mixed_batches_draw_the_pseudo_labelled_share() -> None:
    train, val, unl = _data()
    pseudo = _Counting(unl)
    cfg = SegTrainConfig(**{**TINY, "batch": 4, "steps": 3})  # type: ignore[arg-type]
    train_segmenter(train, val, cfg, data_id="t", pseudo=pseudo, ratio=3.0)
    assert pseudo.reads == 3 * 1  # 3 steps, one pseudo-labelled crop of four (ratio 3 : 1)
    with pytest.raises(cp.ConfigError, match="ratio"):
        train_segmenter(train, val, cfg, data_id="t", pseudo=pseudo, ratio=0.0)


def test_teacher_trained_first_labels_the_images_and_a_rerun_resumes(tmp_path: Path) -> None:
    train, val, unl = _data()
    cfg = SegTrainConfig(**TINY)  # type: ignore[arg-type]
    rule = cp.KeepFraction(0.5)
    res = distill_segmenter(
        train, unl, val, cfg, data_id="t", unlabelled_id="u", rule=rule, transforms=(Identity(), HFlip()), work_dir=tmp_path
    )
    rep = res.pseudo_labels
    assert rep.images == 4 and rep.candidates == 4 * 32 * 48 and rep.kept == 4 * 32 * 48 // 2
    assert rep.accuracy is not None and rep.accuracy_all is not None  # the unlabelled pairs carry masks
    assert res.student_init == "teacher" and res.teacher_result is not None
    assert (tmp_path / "teacher" / "checkpoint.ckpt").is_file() and (tmp_path / "student" / "checkpoint.ckpt").is_file()
    again = distill_segmenter(
        train, unl, val, cfg, data_id="t", unlabelled_id="u", rule=rule, transforms=(Identity(), HFlip()), work_dir=tmp_path
    )
    assert again.teacher_result is not None and again.teacher_result.resumed_from == 1 and again.student.resumed_from == 1
    for k, v in res.student.model.state_dict().items():
        assert torch.equal(v, again.student.model.state_dict()[k]), k


def test_a_given_teacher_of_another_model_gives_a_random_student_and_kept_pixels_only() -> None:
    train, val, unl = _data()
    torch.manual_seed(0)
    teacher = cp.create_model("shuffleseg", num_classes=11, width=0.5)
    cfg = SegTrainConfig(**TINY)  # type: ignore[arg-type]
    res = distill_segmenter(
        train, [x for x, _ in unl], val, cfg, data_id="t", unlabelled_id="u", teacher=teacher, rule=cp.KeepFraction(0.3)
    )
    assert res.student_init == "random" and res.teacher_result is None
    assert res.pseudo_labels.kept == round(0.3 * 4 * 32 * 48) and res.pseudo_labels.accuracy is None
    images, labels = cp.pseudo_label_images(teacher, [x for x, _ in unl], rule=cp.KeepFraction(0.3))
    assert all(int((y != IGNORE_INDEX).sum()) > 0 for _, y in images)
    assert sum(int((y != IGNORE_INDEX).sum()) for _, y in images) == labels.kept


def test_images_of_several_sizes_are_labelled_together() -> None:
    torch.manual_seed(0)
    fcn = torch.nn.Conv2d(3, 4, 1)
    images = [torch.rand(3, 10, 12), torch.rand(3, 7, 9)]
    out, rep = cp.pseudo_label_images(fcn, images, [Identity(), HFlip()], rule=cp.MatchRate(0.5))
    assert rep.candidates == 10 * 12 + 7 * 9 and rep.kept == round(0.5 * rep.candidates)
    assert [tuple(y.shape) for _, y in out] == [(10, 12), (7, 9)]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"unlabelled": []}, "unlabelled set is empty"),
        ({"teacher": "5 classes"}, "teacher predicts 5 classes but the data has 11"),
        ({"transforms": (UserTransform(lambda x: x),)}, "cannot be inverted"),
        ({"rule": cp.Confidence(0.9), "ratio": -1.0}, "ratio"),
    ],
)
def test_bad_input_is_refused_before_any_training(tmp_path: Path, change: dict, match: str) -> None:
    train, val, unl = _data()
    kwargs: dict = {"data_id": "t", "unlabelled_id": "u", "work_dir": tmp_path / "w", **change}
    if kwargs.get("teacher") == "5 classes":
        kwargs["teacher"] = cp.create_model("shuffleseg", num_classes=5, width=0.25)
    with pytest.raises(cp.ConfigError, match=match):
        distill_segmenter(train, kwargs.pop("unlabelled", unl), val, SegTrainConfig(**TINY), **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "w").exists()
