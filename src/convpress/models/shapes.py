"""Recording and re-applying layer structure, so compressed models can be saved and rebuilt.

Structured pruning shrinks layers, low-rank factorization replaces a layer by a ``Sequential``
of two and depth pruning replaces a block by ``nn.Identity``; either way the state_dict no
longer loads into ``resolve_model(arch)``. :func:`layer_shapes` records every Conv/Linear/BatchNorm
layer's full configuration, every ``Sequential``'s length and every ``Identity``;
:func:`apply_shapes_` turns a freshly built architecture into the same structure, after which
the state_dict loads normally.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from convpress.core.errors import FileFormatError

__all__ = ["layer_shapes", "apply_shapes_"]

_CONVS = {c.__name__: c for c in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)}
_NORMS = {c.__name__: c for c in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)}


def _spec(m: nn.Module) -> dict[str, Any] | None:
    if type(m).__name__ in _CONVS and isinstance(m, nn.modules.conv._ConvNd):
        spec: dict[str, Any] = {
            "type": type(m).__name__,
            "in": m.in_channels,
            "out": m.out_channels,
            "kernel": list(m.kernel_size),
            "stride": list(m.stride),
            "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation),
            "groups": m.groups,
            "bias": m.bias is not None,
            "padding_mode": m.padding_mode,
        }
        if m.transposed:
            spec["output_padding"] = list(m.output_padding)
        return spec
    if isinstance(m, nn.Linear):
        return {"type": "Linear", "in": m.in_features, "out": m.out_features, "bias": m.bias is not None}
    if type(m).__name__ in _NORMS and isinstance(m, nn.modules.batchnorm._BatchNorm):
        return {
            "type": type(m).__name__,
            "out": m.num_features,
            "eps": m.eps,
            "momentum": m.momentum,
            "affine": m.affine,
            "track": m.track_running_stats,
        }
    if type(m) is nn.Sequential:
        return {"type": "Sequential", "len": len(m)}
    if type(m) is nn.Identity:  # a block removed by depth pruning (or an architecture's own placeholder)
        return {"type": "Identity"}
    return None


def layer_shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module_name: spec}`` for every Conv, Linear, BatchNorm and Sequential module."""
    return {name: spec for name, m in model.named_modules() if name and (spec := _spec(m)) is not None}


def _build(name: str, spec: dict[str, Any]) -> nn.Module:
    try:
        kind = spec["type"]
        if kind == "Sequential":
            return nn.Sequential(*[nn.Identity() for _ in range(int(spec["len"]))])
        if kind == "Identity":
            return nn.Identity()
        if kind == "Linear":
            return nn.Linear(spec["in"], spec["out"], bias=spec["bias"])
        if kind in _NORMS:
            return _NORMS[kind](
                spec["out"], eps=spec["eps"], momentum=spec["momentum"], affine=spec["affine"], track_running_stats=spec["track"]
            )
        if kind in _CONVS:
            kw: dict[str, Any] = dict(
                stride=tuple(spec["stride"]),
                padding=spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"]),
                dilation=tuple(spec["dilation"]),
                groups=spec["groups"],
                bias=spec["bias"],
                padding_mode=spec["padding_mode"],
            )
            if "output_padding" in spec:
                kw["output_padding"] = tuple(spec["output_padding"])
            return _CONVS[kind](spec["in"], spec["out"], tuple(spec["kernel"]), **kw)
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"recorded shape of {name!r} is malformed ({exc})") from None
    raise FileFormatError(f"recorded shape of {name!r} has unknown type {spec.get('type')!r}")


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    try:
        parent = model.get_submodule(parent_name) if parent_name else model
    except AttributeError:
        raise FileFormatError(f"recorded shapes name layer {name!r}, which the architecture does not have") from None
    if isinstance(parent, nn.Sequential) and child.isdigit() and int(child) >= len(parent):
        raise FileFormatError(f"recorded shapes name layer {name!r}, which the architecture does not have")
    setattr(parent, child, module)


def _weight_shape(name: str, spec: dict[str, Any]) -> tuple[int, ...] | None:
    """The weight shape a recorded Linear, convolution or norm would get (None for other layers)."""
    try:
        if spec.get("type") == "Linear":
            return (int(spec["out"]), int(spec["in"]))
        if spec.get("type") in _CONVS:
            k = tuple(int(v) for v in spec["kernel"])
            g = int(spec["groups"])
            if spec["type"].startswith("ConvTranspose"):
                return (int(spec["in"]), int(spec["out"]) // g, *k)
            return (int(spec["out"]), int(spec["in"]) // g, *k)
        if spec.get("type") in _NORMS:
            return (int(spec["out"]),)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        raise FileFormatError(f"recorded shape of {name!r} is malformed") from None
    return None


def apply_shapes_(model: nn.Module, shapes: dict[str, Any], *, stored: dict[str, tuple[int, ...]] | None = None) -> nn.Module:
    """Give ``model`` the recorded structure (in place); returns ``model``.

    Layers whose recorded configuration differs from the model's (or that the model lacks
    inside a recorded ``Sequential``) are rebuilt from the record; their weights are left for
    ``load_state_dict``.

    Args:
        stored: the shapes of the tensors the file declares (``{name: shape}``). When given, a
            Linear or convolution is rebuilt only if the file holds its weight with exactly that
            shape, checked *before* the layer is allocated: a forged record cannot make a small
            file build a huge model (the declared tensors were already checked against memory).

    Raises:
        FileFormatError: if the record is malformed, names layers outside the architecture, or
            (with ``stored``) disagrees with the stored weights.
    """
    if not isinstance(shapes, dict):
        raise FileFormatError("recorded layer shapes are malformed")
    for name, spec in sorted(shapes.items(), key=lambda kv: kv[0].count(".")):  # parents before children
        if not isinstance(name, str) or not isinstance(spec, dict):
            raise FileFormatError("recorded layer shapes are malformed")
        for key in ("in", "out", "len", "groups"):
            if key in spec and not (isinstance(spec[key], int) and spec[key] > 0):
                raise FileFormatError(f"recorded shape of {name!r} is malformed ({key}={spec[key]!r})")
        try:
            current = model.get_submodule(name)
        except AttributeError:
            current = None
        if current is None and "." not in name:
            raise FileFormatError(f"recorded shapes name layer {name!r}, which the architecture does not have")
        if current is not None and _spec(current) == spec:
            continue
        if spec.get("type") == "Sequential" and isinstance(current, nn.Sequential) and len(current) == spec.get("len"):
            continue
        if spec.get("type") == "Sequential" and not (isinstance(spec.get("len"), int) and 0 < spec["len"] <= 4096):
            raise FileFormatError(f"recorded shape of {name!r} is malformed (len={spec.get('len')!r})")
        want = _weight_shape(name, spec)
        key = f"{name}.running_mean" if spec.get("type") in _NORMS and not spec.get("affine", True) else f"{name}.weight"
        if stored is not None and want is not None and stored.get(key) != want:
            have = stored.get(key)
            raise FileFormatError(
                f"recorded shape of {name!r} ({'x'.join(map(str, want))}) disagrees with its stored weights "
                f"({'none' if have is None else 'x'.join(map(str, have))})"
            )
        _set(model, name, _build(name, spec))
    return model
