"""``convpress bench layers``: the convolution zoo's equivalences, receptive fields, and where MACs and time disagree.

1. Every "two ways" pair is run in float32 on random inputs and its largest relative
   difference reported (target <= 1e-5).
2. Receptive fields of CAN24, torchvision VGG-16 and ResNet-50 are computed from the traced
   graph, checked against gradient measurements on a probe copy of each network, and compared
   with published values.
3. Latency of dense, grouped, depthwise-separable and spatially separable 3x3 layers at the same
   input/output size, timed in interleaved rounds, with MACs beside it (ShuffleNet v2's G1-G4).
"""

from __future__ import annotations

import copy
import time
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from convpress.analysis.cost import layer_costs
from convpress.analysis.receptive import measured_receptive_field, receptive_fields
from convpress.bench import BENCHMARKS, Benchmark
from convpress.bench._common import checks_table, environment, paired_times
from convpress.compress.lowrank import factor_conv_depthwise, factor_conv_separable, factor_linear
from convpress.layers.deformable import DeformConv2dV1, deform_roi_pool
from convpress.layers.dilated import dilated_conv2d_s2b
from convpress.layers.lcnn import LookupConv2d
from convpress.layers.separable import DepthwiseSeparableConv2d, SpatiallySeparableConv2d
from convpress.layers.transposed import conv_transpose2d_subpixel

__all__ = ["run", "to_markdown", "can24_stack"]

TOL = 1e-5


def can24_stack() -> nn.Sequential:
    """The convolutions of CAN24 (Chen et al. 2017): 3x3 with dilations 1..64, then 3x3, then 1x1."""
    layers: list[nn.Module] = []
    c = 3
    for d in (1, 2, 4, 8, 16, 32, 64, 1):
        layers += [nn.Conv2d(c, 24, 3, padding=d, dilation=d, bias=False), nn.LeakyReLU(0.2)]
        c = 24
    layers.append(nn.Conv2d(24, 3, 1))
    return nn.Sequential(*layers)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-30))


def _equivalences() -> list[dict[str, Any]]:
    from torchvision import ops

    torch.manual_seed(0)
    rows: list[dict[str, Any]] = []

    def add(name: str, a: torch.Tensor, b: torch.Tensor) -> None:
        rows.append({"pair": name, "max_rel_error": _rel(a, b), "passed": _rel(a, b) <= TOL})

    x = torch.randn(2, 16, 33, 31)
    for k, s, p, op in ((3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 2, 2), (7, 4, 3, 1)):
        ct = nn.ConvTranspose2d(16, 8, k, stride=s, padding=p, output_padding=op)
        add(
            f"ConvTranspose2d(k={k}, s={s}, p={p}, op={op}) vs conv + depth_to_space",
            conv_transpose2d_subpixel(x, ct.weight, ct.bias, stride=s, padding=p, output_padding=op),
            ct(x),
        )
    for d, p in ((2, 2), (4, 4), (8, 3)):
        w, b = torch.randn(8, 16, 3, 3), torch.randn(8)
        add(
            f"dilation {d} vs space_to_batch -> conv -> batch_to_space",
            dilated_conv2d_s2b(x, w, b, dilation=d, padding=p),
            F.conv2d(x, w, b, padding=p, dilation=d),
        )
    conv = nn.Conv2d(16, 12, 3, padding=1)
    add("3x3 conv vs full-rank 3x1 + 1x3 (SVD split)", factor_conv_separable(conv, 10_000)(x), conv(x))
    add("3x3 conv vs full-rank depthwise + pointwise (SVD)", factor_conv_depthwise(conv, 10_000)(x), conv(x))
    lin = nn.Linear(64, 48)
    v = torch.randn(5, 64)
    add("Linear vs full-rank Linear pair (SVD)", factor_linear(lin, 10_000)(v), lin(v))
    lc = LookupConv2d(16, 8, 3, dictionary_size=12, sparsity=3)
    add("LCNN lookup path vs dense reconstructed conv", lc.lookup_forward(x), lc(x))
    dc = DeformConv2dV1(16, 8, 3)
    add("deformable conv with zero offsets vs conv", dc(x), F.conv2d(x, dc.weight, dc.bias, padding=1))
    rois = torch.tensor([[0, 2.0, 3.0, 25.0, 20.0], [1, 5.0, 1.0, 14.0, 28.0]])
    add(
        "deformable RoI pooling with zero offsets vs RoIAlign",
        deform_roi_pool(x, rois, torch.zeros(2, 2, 4, 4), 4),
        ops.roi_align(x, rois, 4, sampling_ratio=2, aligned=False),
    )
    return rows


def _receptive_fields(quick: bool) -> list[dict[str, Any]]:
    import torchvision

    r50 = torchvision.models.resnet50()
    r50_v1 = copy.deepcopy(r50)
    for stage in (r50_v1.layer2, r50_v1.layer3, r50_v1.layer4):  # v1: stride on the first 1x1 of each stage
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    cases = [
        (
            "CAN24 (dilations 1..64, then 3x3 and 1x1)",
            can24_stack(),
            "16",
            257,
            "Yu & Koltun 2016: after the 3x3 layer with dilation 2^i the field is 2^(i+2)-1 (255 after dilation 64), +2 for the last 3x3",
            320,
        ),
        (
            "torchvision VGG-16, pool5",
            torchvision.models.vgg16(),
            "features.30",
            212,
            "Araujo et al., Distill 2019 (vgg_16: 212, effective stride 32)",
            256,
        ),
        (
            "ResNet-50 v1 (stride in the 1x1 conv), layer4",
            r50_v1,
            "layer4",
            483,
            "Araujo et al., Distill 2019 (resnet_v1_50: 483, effective stride 32)",
            544,
        ),
        (
            "torchvision ResNet-50 (v1.5: stride in the 3x3 conv), layer4",
            r50,
            "layer4",
            427,
            "no published table; the same rules as v1 (stride moved one layer later shrinks the field)",
            480,
        ),
    ]
    rows = []
    for name, model, layer, published, source, probe_size in cases:
        fields = receptive_fields(model)
        key = layer if layer in fields else [k for k in fields if k.startswith(layer)][-1]
        f = fields[key]
        measured = None
        if not quick or "CAN24" in name:
            measured = measured_receptive_field(model, probe_size, layer=layer if layer in dict(model.named_modules()) else None)
        rows.append(
            {
                "network": name,
                "layer": key,
                "computed": list(f.size or ()),
                "effective_stride": list(f.stride or ()),
                "effective_padding": list(f.padding or ()),
                "measured": list(measured) if measured else None,
                "published": published,
                "source": source,
                "passed": f.size == (published, published) and (measured is None or measured == (published, published)),
            }
        )
    return rows


def _latency(quick: bool) -> list[dict[str, Any]]:
    c, hw = 128, 56
    layers: dict[str, nn.Module] = {"dense 3x3": nn.Conv2d(c, c, 3, padding=1, bias=False)}
    for g in (2, 4, 8):
        layers[f"grouped 3x3, g={g}"] = nn.Conv2d(c, c, 3, padding=1, groups=g, bias=False)
    layers["depthwise separable (dw 3x3 + 1x1)"] = DepthwiseSeparableConv2d(c, c, 3, bias=False)
    layers["spatially separable (3x1 + 1x3)"] = SpatiallySeparableConv2d(c, c, 3, bias=False)
    layers["pointwise 1x1 only"] = nn.Conv2d(c, c, 1, bias=False)
    rows = []
    for batch in (1, 8):
        x = torch.randn(batch, c, hw, hw)
        macs = {n: sum(r.macs for r in layer_costs(m, x[:1])) for n, m in layers.items()}
        with torch.no_grad():
            times = paired_times({n: partial(m, x) for n, m in layers.items()}, warmup=3, repeat=5 if quick else 30)
        base_t, base_m = times["dense 3x3"], macs["dense 3x3"]
        for n in layers:
            rows.append(
                {
                    "layer": n,
                    "batch": batch,
                    "macs": macs[n],
                    "seconds": times[n],
                    "mac_ratio": macs[n] / base_m,
                    "time_ratio": times[n] / base_t,
                    "ns_per_mac": times[n] / batch / macs[n] * 1e9,
                }
            )
    return rows


def run(*, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the benchmark; ``quick`` skips the slow gradient measurements of VGG/ResNet and times fewer rounds."""
    t0 = time.perf_counter()
    eq = _equivalences()
    rf = _receptive_fields(quick)
    lat = _latency(quick)
    worst = max(r["max_rel_error"] for r in eq)
    checks = [
        {
            "name": f"every 'two ways' pair equal to float32 tolerance (<= {TOL:g} relative)",
            "value": worst,
            "target": TOL,
            "passed": worst <= TOL,
        }
    ]
    for r in rf:
        checks.append(
            {
                "name": f"receptive field of {r['network']} = {r['published']}",
                "value": r["computed"][0] if r["computed"] else None,
                "target": r["published"],
                "passed": r["passed"],
            }
        )
    return {
        "benchmark": "layers",
        "quick": quick,
        "environment": environment(),
        "seconds": time.perf_counter() - t0,
        "equivalences": eq,
        "receptive_fields": rf,
        "latency": lat,
        "checks": checks,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The BENCHMARKS.md section for this result."""
    env = result["environment"]
    lines = [
        "## The convolution zoo (`convpress bench layers`)",
        "",
        f"{env['date']}, {env['cpu_count']} CPU cores, torch {env['torch']}; {result['seconds']:.0f} s"
        f"{' (QUICK smoke run)' if result['quick'] else ''}.",
        "",
        "**Equivalences** (float32, random inputs; largest relative difference):",
        "",
        "| pair | max rel. error |",
        "|---|---|",
    ]
    lines += [f"| {r['pair']} | {r['max_rel_error']:.1e} |" for r in result["equivalences"]]
    lines += [
        "",
        "**Receptive fields** (computed from the traced graph; measured = support of the input gradient on a probe copy):",
        "",
        "| network | layer | computed | eff. stride | measured | published | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["receptive_fields"]:
        meas = f"{r['measured'][0]}x{r['measured'][1]}" if r["measured"] else "(not run)"
        lines.append(
            f"| {r['network']} | {r['layer']} | {r['computed'][0]}x{r['computed'][1]} | {r['effective_stride'][0]:g} | {meas} | "
            f"{r['published']} | {r['source']} |"
        )
    lines += [
        "",
        "**Where MACs and time disagree** (128→128 channels at 56x56, median of interleaved rounds):",
        "",
        "| layer | batch | MACs | MACs vs dense | time | time vs dense | ns per MAC |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["latency"]:
        lines.append(
            f"| {r['layer']} | {r['batch']} | {r['macs'] / 1e6:.1f}M | {r['mac_ratio']:.2f}× | {r['seconds'] * 1e3:.2f} ms | "
            f"{r['time_ratio']:.2f}× | {r['ns_per_mac']:.3f} |"
        )
    lines += [
        "",
        "Grouped and depthwise convolutions cut MACs far more than time (ShuffleNet v2's G2: group convolution "
        "raises memory access cost; G3: fragmented layers run below the hardware's peak).",
        "",
    ]
    lines += checks_table(result["checks"])
    return "\n".join(lines) + "\n"


BENCHMARKS.register("layers", Benchmark(run, to_markdown, "the convolution zoo: equivalences, receptive fields, MACs against time"))
