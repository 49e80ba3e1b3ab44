"""``convpress fip`` as a user runs it, including every bad input named in issue 4."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from convpress.cli.main import main
from convpress.fip.operators import operator_names
from convpress.fip.weights import load_network, shipped_operators


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 72x96 RGB PNG cut from a bundled training photo."""
    from convpress.data.photos import bundled_photo

    path = tmp_path_factory.mktemp("img") / "in.png"
    rgb = (bundled_photo("chelsea").permute(1, 2, 0).numpy()[50:122, 100:196] * 255).round().astype(np.uint8)
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) gf-can24 network file for operator rof."""
    from convpress.fip.weights import save_network
    from convpress.models import create_model

    return save_network(create_model("gf-can24"), tmp_path_factory.mktemp("w") / "rof.safetensors", model_name="gf-can24", operator="rof")


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_operators_lists_one_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fip", "operators"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == operator_names()
    pretrained = {ln.split()[0] for ln in lines if "pretrained" in ln.split()}
    assert pretrained == set(shipped_operators())


def test_apply_network_and_reference(tmp_path: Path, photo: Path, weights: Path) -> None:
    out, ref = tmp_path / "net.png", tmp_path / "ref.png"
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(out), "--weights", str(weights)]) == 0
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(ref), "--reference"]) == 0
    a, r = cv2.imread(str(out)), cv2.imread(str(ref))
    assert a.shape == r.shape == (72, 96, 3)
    # an untrained gf-can24 starts close to the identity
    assert np.abs(a.astype(int) - cv2.imread(str(photo)).astype(int)).mean() < 6


def test_apply_reference_takes_operator_parameters_and_refuses_bad_ones(
    tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default, weak = tmp_path / "default.png", tmp_path / "weak.png"
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(default), "--reference"]) == 0
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(weak), "--reference", "--param", "weight=0.01"]) == 0
    img = cv2.imread(str(photo)).astype(int)
    # a weaker ROF weight stays closer to the input than the default
    assert np.abs(cv2.imread(str(weak)).astype(int) - img).mean() < np.abs(cv2.imread(str(default)).astype(int) - img).mean()
    capsys.readouterr()
    bad = tmp_path / "bad.png"
    for extra, message in [
        (["--reference", "--param", "nosuch=1"], "has no parameter(s) nosuch"),
        (["--reference", "--param", "weight"], "KEY=VALUE"),
        (["--param", "weight=0.01"], "with --reference"),
        (["--reference", "--param", 'weight="strong"'], "rof: weight must be a number, got 'strong'"),
        (["--reference", "--param", "weight=NaN"], "rof: weight must be a finite number"),
    ]:
        assert main(["fip", "apply", "--operator", "rof", str(photo), str(bad), *extra]) == 2
        assert message in _error(capsys) and not bad.exists()


def test_apply_tiled_equals_untiled(tmp_path: Path, photo: Path, weights: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(a), "--weights", str(weights)]) == 0
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(b), "--weights", str(weights), "--tile-rows", "9"]) == 0
    assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b)))


def test_apply_that_cannot_fit_in_memory_exits_2_naming_the_fix(
    tmp_path: Path, photo: Path, weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVPRESS_MAX_MEMORY", "100M")
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(tmp_path / "o.png"), "--weights", str(weights)]) == 2
    err = _error(capsys)
    assert "needs about" in err and "only 100.0 MB is available" in err and "--tile-rows" in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(not shipped_operators(), reason="no shipped weights yet")
def test_apply_works_out_of_the_box_with_shipped_weights(tmp_path: Path, photo: Path) -> None:
    op = shipped_operators()[0]
    assert main(["fip", "apply", "--operator", op, str(photo), str(tmp_path / "o.png")]) == 0


@pytest.mark.parametrize("kind", ["gray", "alpha", "16bit"])
def test_gray_alpha_and_16bit_inputs_are_converted(kind: str, tmp_path: Path, photo: Path, weights: Path) -> None:
    bgr = cv2.imread(str(photo))
    src = tmp_path / f"{kind}.png"
    if kind == "gray":
        cv2.imwrite(str(src), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    elif kind == "alpha":
        cv2.imwrite(str(src), np.dstack([bgr, np.full(bgr.shape[:2], 128, np.uint8)]))
    else:
        cv2.imwrite(str(src), bgr.astype(np.uint16) * 257)
    out = tmp_path / "o.png"
    assert main(["fip", "apply", "--operator", "rof", str(src), str(out), "--weights", str(weights)]) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (72, 96, 3)


def _bad(tmp_path: Path, photo: Path, weights: Path, case: str) -> list[str]:
    out = str(tmp_path / "out.png")
    if case == "not-an-image":
        txt = tmp_path / "notes.png"
        txt.write_text("hello, not pixels")
        return ["fip", "apply", "--operator", "rof", str(txt), out, "--weights", str(weights)]
    if case == "missing":
        return ["fip", "apply", "--operator", "rof", str(tmp_path / "nope.png"), out, "--weights", str(weights)]
    if case == "too-small":
        small = tmp_path / "small.png"
        cv2.imwrite(str(small), np.zeros((20, 20, 3), np.uint8))
        return ["fip", "apply", "--operator", "rof", str(small), out, "--weights", str(weights)]
    if case == "unknown-operator":
        return ["fip", "apply", "--operator", "l1", str(photo), out]
    if case == "mismatched-weights":
        from convpress.fip.weights import save_network
        from convpress.models import create_model

        bad = save_network(create_model("can32"), tmp_path / "bad.safetensors", model_name="gf-can24", operator="rof")
        return ["fip", "apply", "--operator", "rof", str(photo), out, "--weights", str(bad)]
    if case == "foreign-weights":
        junk = tmp_path / "junk.safetensors"
        junk.write_bytes(b"\x00" * 64)
        return ["fip", "apply", "--operator", "rof", str(photo), out, "--weights", str(junk)]
    if case == "other-operator":
        return ["fip", "apply", "--operator", "l0", str(photo), out, "--weights", str(weights)]
    if case == "output-is-input":
        return ["fip", "apply", "--operator", "rof", str(photo), str(photo), "--weights", str(weights), "--force"]
    if case == "output-exists":
        Path(out).write_bytes(b"x")
        return ["fip", "apply", "--operator", "rof", str(photo), out, "--weights", str(weights)]
    raise AssertionError(case)


BAD = {
    "not-an-image": "not a readable image",
    "missing": "no such file",
    "too-small": "needs at least 32x32",
    "unknown-operator": "unknown operator 'l1'",
    "mismatched-weights": "do not match model gf-can24",
    "foreign-weights": "not a safetensors",
    "other-operator": "trained for operator rof, not l0",
    "output-is-input": "same file as input",
    "output-exists": "pass --force",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_line_and_exit_2(
    case: str, tmp_path: Path, photo: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = photo.read_bytes()
    assert main(_bad(tmp_path, photo, weights, case)) == 2
    assert BAD[case] in _error(capsys)
    assert photo.read_bytes() == before  # the input is never touched


def test_pairs_and_train_end_to_end(tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    img = cv2.imread(str(photo))
    for i in range(3):
        cv2.imwrite(str(folder / f"p{i}.png"), np.roll(img, 13 * i, axis=1))
    cache, w = tmp_path / "cache", tmp_path / "net.safetensors"
    assert (
        main(["fip", "pairs", "--operator", "tvl1", "--folder", str(folder), "--cache", str(cache), "--sizes", "64", "96", "--no-progress"])
        == 0
    )
    assert "6 pairs" in capsys.readouterr().out
    assert (
        main(
            [
                "fip",
                "train",
                "--operator",
                "tvl1",
                "--cache",
                str(cache),
                "--out",
                str(w),
                "--epochs",
                "1",
                "--steps",
                "2",
                "--batch",
                "1",
                "--crops",
                "48",
                "--work-dir",
                str(tmp_path / "work"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "validation PSNR" in capsys.readouterr().out
    # whole photos, one per step (the --batch of 4 gives way to 1)
    whole = tmp_path / "whole.safetensors"
    args = ["--operator", "tvl1", "--cache", str(cache), "--out", str(whole), "--epochs", "1", "--steps", "2", "--whole", "--no-progress"]
    assert main(["fip", "train", *args, "--model", "lap-remap-tone", "--batch", "4"]) == 0
    assert "validation PSNR" in capsys.readouterr().out
    info = load_network(whole)[1]
    assert info["model"] == "lap-remap-tone" and info["train"]["whole"] is True and info["train"]["batch"] == 1
    assert main(["fip", "apply", "--operator", "tvl1", str(photo), str(tmp_path / "o.png"), "--weights", str(w)]) == 0
    capsys.readouterr()
    # training without pairs is one clear error
    assert main(["fip", "train", "--operator", "l0", "--cache", str(cache), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "run 'convpress fip pairs' first" in _error(capsys)


def test_pairs_with_operator_parameters_and_train_records_them(tmp_path: Path, photo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "p.png"), cv2.imread(str(photo)))
    cache, w = tmp_path / "cache", tmp_path / "net.safetensors"
    pairs = ["fip", "pairs", "--operator", "l0", "--folder", str(folder), "--cache", str(cache), "--sizes", "64", "--no-progress"]
    assert main([*pairs, "--param", "lam=0.2"]) == 0
    capsys.readouterr()
    from convpress.data.images import read_image
    from convpress.fip.operators.smoothing import l0_smooth
    from convpress.fip.pairs import load_pairs

    (pair,) = load_pairs(cache, "l0")
    img = read_image(pair.input).permute(1, 2, 0).numpy()
    want = l0_smooth(img, lam=0.2)
    assert np.abs(read_image(pair.target).permute(1, 2, 0).numpy() - want).max() < 1e-3  # made with lam 0.2 (16-bit PNG)
    assert np.abs(want - l0_smooth(img)).max() > 0.05  # which is not the default
    train = ["fip", "train", "--operator", "l0", "--cache", str(cache), "--out", str(w), "--epochs", "1", "--steps", "1"]
    assert main([*train, "--batch", "1", "--crops", "48", "--no-progress"]) == 0
    assert load_network(w)[1]["operator_params"] == {"lam": 0.2}


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("nolam=1", "operator l0 has no parameter(s) nolam"),
        ("lam", "--param takes KEY=VALUE, got 'lam'"),
        ("kappa=[2]", "l0: kappa must be a number, got [2]"),
    ],
)
def test_pairs_refuse_a_bad_parameter_before_any_work(tmp_path: Path, param: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    assert main(["fip", "pairs", "--operator", "l0", "--cache", str(cache), "--param", param, "--no-progress"]) == 2
    assert message in _error(capsys)
    assert not cache.exists()


@pytest.mark.parametrize("op", shipped_operators())
def test_every_shipped_network_imitates_the_current_version_of_its_operator(op: str) -> None:
    # a fixed operator (a raised version) needs its network retrained on new pairs: pencil's and
    # wls's were, on 2026-12-04; this fails for a network left behind
    from convpress.fip.operators import get_operator
    from convpress.fip.weights import shipped_weights

    _, info = load_network(shipped_weights(op))
    assert info["operator"] == op
    assert info["operator_version"] == get_operator(op).version


def test_apply_warns_on_a_network_for_an_older_operator_version(
    tmp_path: Path, photo: Path, weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from convpress.fip import operators

    assert load_network(weights)[1]["operator_version"] == 1
    fixed = dataclasses.replace(operators.get_operator("rof"), version=2)
    monkeypatch.setitem(operators.OPERATORS._items, "rof", fixed)
    assert main(["fip", "apply", "--operator", "rof", str(photo), str(tmp_path / "out.png"), "--weights", str(weights)]) == 0
    err = capsys.readouterr().err
    assert "imitates version 1 of operator rof, which is now version 2" in err
    assert (tmp_path / "out.png").is_file()


def test_a_network_recording_a_bad_operator_version_is_refused(tmp_path: Path, weights: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from convpress.core.errors import FileFormatError

    with safe_open(str(weights), "pt") as h:
        meta = dict(h.metadata())
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(weights)), str(bad), metadata={**meta, "operator_version": "zero"})
    with pytest.raises(FileFormatError, match="operator version 'zero'"):
        load_network(bad)


def test_a_saved_network_records_its_operators_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from convpress.fip import operators
    from convpress.fip.weights import save_network
    from convpress.models import create_model

    monkeypatch.setitem(operators.OPERATORS._items, "rof", dataclasses.replace(operators.get_operator("rof"), version=3))
    path = save_network(create_model("gf-can24"), tmp_path / "rof.safetensors", model_name="gf-can24", operator="rof")
    assert load_network(path)[1]["operator_version"] == 3
