"""Costs, receptive fields (computed, measured, published) and the analyze command."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import convpress as cp
from convpress.analysis import effective_receptive_field, layer_costs, measured_receptive_field, receptive_fields
from convpress.cli import analyze as analyze_cli


def test_lenet5_costs_are_exact() -> None:
    rows = {r.name: r for r in layer_costs(cp.create_model("lenet-5"), torch.zeros(1, 1, 28, 28))}
    assert {n: r.macs for n, r in rows.items()} == {"conv1": 24 * 24 * 20 * 25, "conv2": 8 * 8 * 50 * 20 * 25, "fc1": 400_000, "fc2": 5_000}
    assert rows["conv1"].params == 520 and rows["conv1"].activation_bytes == 20 * 24 * 24 * 4
    grouped = layer_costs(nn.Conv2d(8, 8, 3, groups=4), torch.zeros(2, 8, 10, 10))[0]
    assert grouped.macs == 8 * 8 * 8 * 2 * 9  # per sample: Ho·Wo·Cout·(Cin/g)·k²
    up = layer_costs(nn.ConvTranspose2d(4, 6, 3, stride=2), torch.zeros(1, 4, 5, 5))[0]
    assert up.macs == 4 * 5 * 5 * 6 * 9  # every input pixel scatters Cout·k² products


def _rf(model: nn.Module) -> tuple[int, int]:
    return [f for f in receptive_fields(model).values() if f.size is not None][-1].size  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)]), (31, 31)),
        (nn.Sequential(nn.Conv2d(1, 2, (5, 1), padding=(2, 0)), nn.Conv2d(2, 2, (1, 3), padding=(0, 1))), (5, 3)),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, stride=2), nn.AvgPool2d(3, 1)), (16, 16)),
    ],
)
def test_computed_fields_match_gradient_measurements(model: nn.Module, expected: tuple[int, int]) -> None:
    assert _rf(model) == expected
    assert measured_receptive_field(model, 48, channels=1) == expected


def test_transposed_conv_and_upsampling_shrink_the_stride() -> None:
    m = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1), nn.Upsample(scale_factor=2)
    )
    f = [f for f in receptive_fields(m).values()]
    assert f[0].stride == (2.0, 2.0) and f[1].stride == (1.0, 1.0) and f[2].stride == (0.5, 0.5)
    assert measured_receptive_field(m[:2], 40, channels=1) == f[1].size


def _down() -> nn.Conv2d:
    return nn.Conv2d(1, 2, 3, stride=2, padding=1)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (nn.Sequential(_down(), nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1)), (5, 5)),
        (nn.Sequential(nn.ConvTranspose2d(1, 2, 3, stride=1)), (3, 3)),
        (nn.Sequential(nn.ConvTranspose2d(1, 2, 5, stride=3, padding=1)), (2, 2)),
        (nn.Sequential(_down(), nn.Upsample(scale_factor=2)), (3, 3)),  # nearest: no growth
        (nn.Sequential(_down(), nn.Upsample(scale_factor=2, mode="bilinear")), (5, 5)),  # bilinear: one input step more
        (nn.Sequential(_down(), nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3, padding=1)), (5, 5)),
        (nn.Sequential(_down(), nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(2, 2, 3, padding=1)), (7, 7)),
    ],
)
def test_fields_through_transposed_convs_and_upsampling_equal_the_measured_ones(model: nn.Module, expected: tuple[int, int]) -> None:
    assert _rf(model) == expected
    assert measured_receptive_field(model, 40, channels=1) == expected


def test_published_receptive_fields() -> None:
    vgg = receptive_fields(torchvision.models.vgg16())["features.30"]
    assert vgg.size == (212, 212) and vgg.stride == (32.0, 32.0) and vgg.padding == (90.0, 90.0)  # Araujo et al. 2019
    r50 = torchvision.models.resnet50()
    v1 = copy.deepcopy(r50)
    for stage in (v1.layer2, v1.layer3, v1.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    assert _rf(v1) == (483, 483)  # resnet_v1_50 in Araujo et al. 2019
    assert _rf(r50) == (427, 427)  # torchvision's v1.5 puts the stride one layer later
    assert receptive_fields(r50)["fc"].size is None  # after global pooling: the whole image


def test_effective_field_is_inside_the_theoretical_one() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(*[nn.Sequential(nn.Conv2d(1 if i == 0 else 4, 4, 3, padding=1), nn.ReLU()) for i in range(6)])
    erf, stats = effective_receptive_field(m, 41, channels=1, samples=2)
    assert erf.shape == (41, 41) and erf.max() == 1.0
    assert 1 <= stats["erf95_h"] <= 13 and 1 <= stats["erf95_w"] <= 13  # 6 layers of 3x3: 13x13
    with pytest.raises(ValueError, match="layer"):
        effective_receptive_field(m, 16, channels=1, layer="nope")


def test_analyze_cli_writes_table_plot_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, js = tmp_path / "erf.png", tmp_path / "a.json"
    assert analyze_cli.main(["lenet-5", "--erf-png", str(png), "--json", str(js), "--latency"]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "14x14" in out and "latency" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["macs"] == 2_293_000 and data["rf_layer"] == "conv2"
    assert analyze_cli.main(["lenet-5", "--erf-png", str(png)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["no-such-net"], "unknown architecture"),
        (["lenet-5", "--layer", "fc9"], "--layer"),
        (["lenet-5", "--channels", "3"], "does not run"),
    ],
)
def test_analyze_cli_errors(argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert analyze_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_a_registered_mac_handler_counts_a_custom_layer_and_its_subclasses() -> None:
    from convpress.analysis.cost import MAC_HANDLERS, layer_costs, register_mac_handler

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    class Scale2(Scale):
        pass

    before = {r.name: r.macs for r in layer_costs(torch.nn.Sequential(Scale()), torch.zeros(1, 3, 4, 4))}
    assert before == {"0": 0}
    register_mac_handler(Scale)(lambda m, inputs, out: out[0].numel())
    try:
        rows = layer_costs(torch.nn.Sequential(Scale(), Scale2()), torch.zeros(2, 3, 4, 4))
        assert [(r.name, r.macs) for r in rows] == [("0", 48), ("1", 48)]
        with pytest.raises(ValueError, match="already registered"):
            register_mac_handler(Scale)(lambda m, inputs, out: 0)
    finally:
        MAC_HANDLERS.unregister(Scale)  # the registry is global: leave it as it was


class TwoInputs(nn.Module):
    """An image and a second tensor with its own conv; a parameter (get_attr) scales the image's conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.side, self.head = nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 5), nn.Conv2d(1, 1, 3)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x) * (self.scale * 2) + self.side(y))


def test_only_the_first_input_is_the_image_and_parameters_carry_no_field() -> None:
    fields = receptive_fields(TwoInputs())
    assert list(fields) == ["conv", "head"]  # the second input's conv has no field in the image
    assert fields["head"].size == (5, 5)
    pooled = receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)))
    assert pooled["1"] == cp.analysis.ReceptiveField("1", None, None, None)  # global, and still named


def test_receptive_fields_errors_name_the_cause() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x  # data-dependent control flow

    with pytest.raises(ValueError, match=r"model: torch\.fx cannot trace it \(TraceError"):
        receptive_fields(Branchy())
    with pytest.raises(ValueError, match=r"x: the model does not run on a \(1, 3, 20, 20\) input \(RuntimeError"):
        receptive_fields(nn.Sequential(nn.Conv2d(1, 1, 3)), torch.zeros(1, 3, 20, 20))


def test_measured_field_leaves_the_model_alone_and_ignores_nonlinearities() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Conv2d(1, 1, 3))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # the real ReLU would cut every path
    before = copy.deepcopy(model.state_dict())
    assert measured_receptive_field(model, (21, 33), channels=1) == (5, 5)  # H != W: the centre row is H // 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match=r"layer: output of the model has shape \(1, 4\); a spatial"):
        measured_receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), 8, channels=1)


def test_effective_field_is_centred_seeded_and_per_axis() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, (5, 1)), nn.ReLU(), nn.Conv2d(4, 4, (3, 1)))  # 7 x 1 theoretical field
    erf, stats = effective_receptive_field(model, (21, 31))  # 3 channels by default
    rows, cols = erf.sum(1).nonzero()[0], erf.sum(0).nonzero()[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (7, 13, 15, 15)  # the centre output (7, 15) of 15 x 31
    assert stats["erf95_w"] == 1.0 and stats["erf95_h"] > 1.0
    again, _ = effective_receptive_field(model, (21, 31), seed=0, samples=4)
    other, _ = effective_receptive_field(model, (21, 31), seed=1)
    assert (again == erf).all() and not (other == erf).all()
    one, _ = effective_receptive_field(model, (21, 31), samples=1)
    assert not (one == erf).all()  # the samples are summed
    with pytest.raises(ValueError, match=r"layer: output of 0\.1 has shape"):
        effective_receptive_field(nn.Sequential(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 2))), 4, layer="0.1")
    with pytest.raises(ValueError, match=r"layer: output of the model has shape \(1, 2\)"):
        effective_receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16, 2)), 4)


def test_effective_field_sums_the_samples() -> None:
    """After a ReLU on the input, each sample's gradient covers a random part of the 3 x 3 window; the sum covers their union."""
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(1, 1, 3))
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    one, _ = effective_receptive_field(model, 9, channels=1, samples=1)
    four, _ = effective_receptive_field(model, 9, channels=1, samples=4)
    assert (four > 0)[one > 0].all() and (four > 0).sum() > (one > 0).sum()


def test_effective_field_width_holds_95_percent_of_the_mass() -> None:
    model = nn.Conv2d(1, 1, (3, 1), bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([1.0, 20.0, 1.0]).reshape(1, 1, 3, 1))
    _, stats = effective_receptive_field(model, 9, channels=1, samples=1)
    assert stats == {"erf95_h": 3.0, "erf95_w": 1.0}  # 20 of 22 is under 95%, 22 of 22 is not
    _, single = effective_receptive_field(nn.Conv2d(1, 1, 1), 9, channels=1, samples=1)
    assert single == {"erf95_h": 1.0, "erf95_w": 1.0}  # one pixel holds all the mass


def test_effective_field_of_an_input_blind_output_is_zero() -> None:
    model = nn.Conv2d(1, 1, 3)
    with torch.no_grad():
        model.weight.zero_()
    erf, stats = effective_receptive_field(model, 9, channels=1, samples=1)
    assert not erf.any() and stats == {"erf95_h": 0.0, "erf95_w": 0.0}


def test_erf_png_with_and_without_the_theoretical_box(tmp_path: Path) -> None:
    from convpress.analysis.receptive import field_box, save_erf_png

    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))
    erf, _ = effective_receptive_field(model, 15, channels=1, samples=1)
    box = field_box(receptive_fields(model)["1"], (11, 11))
    assert box == (5.0, 5.0, 5, 5)
    for name, b in (("box.png", box), ("plain.png", None)):
        save_erf_png(erf, str(tmp_path / name), title=name, box=b)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
