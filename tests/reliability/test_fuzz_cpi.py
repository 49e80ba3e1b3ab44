"""10,000 random mutations of a valid .cpi: each decodes to the exact original or is refused with FileFormatError
(streams forged with valid checksums: refused, or decoded to an image of the declared size, never a crash).

Six files, 10,000 mutations each: a file of the overfitted per-image model (whose "net" stream
carries its decoder, so forged streams also forge architectures and parameters), one of the
variable-rate model (one set of weights for levels 2, 3 and 4, resolved as the shipped weights
are: a forged quality field picks another level, whose weights tag differs), a single-tile
file and a tiled one (a 40x100 image in tiles of 40x64 and 40x36, whose header fields "t", "h",
"w" and section table the mutations forge too) in the compact layout, the single-tile one (and
the two above) in format version 4 (escaped latents: forged streams also forge escapes and their
distances) and the tiled one in version 3 (latents clamped to the tables), and the tiled one in
the legacy JSON layout (version 2) that older convpress wrote and that still decodes, and the
tiled one in format version 5, whose tiles carry a synthesis correction each (forged streams also
forge its mode, step and parameters). The last four come from a tiny randomly initialised hyperprior (fast to decode). Mutations: bit
flips, truncations, insertions, deletions, overwrites, and changes of header fields re-checksummed
so that the reader has to validate the fields themselves, and changes of the latent streams with
re-computed checksums, so that the rANS decoder itself meets garbage (a forged but well-formed file).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from tests.helpers.mutate import mutate, mutations

from convpress.codec.bitstream import decode_image, encode_image, read_header
from convpress.codec.models import CodecModel, build_model
from convpress.codec.weights import at_quality, weights_id
from convpress.core.errors import ConfigError, FileFormatError

_STATE: dict[str, dict[str, object]] = {}
# (image size, tile side, format version); "legacy" is the JSON layout older convpress wrote, still read
_FILES = {
    "single": ((21, 37), 1024, 4),
    "tiled": ((40, 100), 64, 3),
    "legacy": ((40, 100), 64, 2),
    "overfit": ((21, 37), 1024, 4),
    "varrate": ((40, 100), 64, 4),
    "corrected": ((40, 100), 64, 5),
}


def _varrate_resolver(model: CodecModel, wid: str, qualities: list[int]) -> Any:
    """Resolves qualities as :func:`convpress.codec.weights.pretrained` does for a variable-rate model."""
    meta = {"weights_id": wid, "levels": json.dumps({str(q): 0.01 * (k + 1) for k, q in enumerate(qualities)})}
    return lambda name, q: at_quality(model, meta, q)


def _setup(which: str) -> dict[str, object]:
    if which not in _STATE:
        torch.manual_seed(0)
        size, tile, version = _FILES[which]
        x = torch.rand(3, *size)
        if which == "overfit":  # the per-image family: its decoder parameters are in the file too
            model = build_model("overfit", {"levels": 3, "arm_hidden": 6, "synth_hidden": 6})
            model.lmbda = 0.01
            wid = model.FORMAT_ID  # type: ignore[attr-defined]
            data = encode_image(x, model, quality=3, weights_id=wid, tile=tile, version=version, effort=20)
        elif which == "varrate":
            model = build_model("varrate", {"N": 8, "M": 12, "LEVELS": 3})
            with torch.no_grad():
                model.g_a[-1].weight.mul_(4.0)
            model.init_gains([0.005, 0.01, 0.02], 0.01)  # type: ignore[operator]
            model.eval()
            model.update()
            resolve = _varrate_resolver(model, weights_id(model.state_dict()), [2, 3, 4])
            net, meta = resolve("varrate", 3)
            data = encode_image(x, net, quality=3, weights_id=meta["weights_id"], tile=tile, version=version)
            _STATE[which] = {"data": data, "resolver": resolve, "pixels": decode_image(data, resolver=resolve)[0]}
            return _STATE[which]
        else:
            model = build_model("hyperprior", {"N": 8, "M": 12})
            with torch.no_grad():
                model.g_a[-1].weight.mul_(4.0)
            model.eval()
            model.update()
            model.lmbda = 0.01  # fits the synthesis correction of a version-5 file
            wid = weights_id(model.state_dict())
            data = encode_image(x, model, quality=3, weights_id=wid, tile=tile, version=version)
            if version == 5:  # forged correction streams are what this file is for: both tiles carry one
                assert all(read_header(data)[1][2::3])
        resolver = lambda name, q: (model, {"weights_id": wid})  # noqa: E731
        _STATE[which] = {"data": data, "resolver": resolver, "pixels": decode_image(data, resolver=resolver)[0]}
    return _STATE[which]


MUTATIONS = mutations(["flip", "truncate", "insert", "delete", "overwrite", "header", "header", "section", "section"], max_pos=10_000)


@pytest.mark.parametrize("which", sorted(_FILES))
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=MUTATIONS)
def test_mutated_files_decode_exactly_or_are_refused(which, m) -> None:  # type: ignore[no-untyped-def]
    state = _setup(which)
    mutant = mutate(state["data"], *m)  # type: ignore[arg-type]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: a thread pool only adds overhead on a busy machine
    t0 = time.perf_counter()
    try:
        pixels, _ = decode_image(mutant, resolver=state["resolver"])  # type: ignore[arg-type]
    except FileFormatError:
        return
    except ConfigError:
        # only a quality field forged to one that no weights serve: refused as the shipped weights refuse it
        assert which == "varrate" and mutant[11] not in (2, 3, 4)
        return
    finally:
        torch.set_num_threads(threads)
        # bounded work per input: a forged size cannot trigger a long decode (generous, not a benchmark)
        assert time.perf_counter() - t0 < 20
    if m[0] == "section":
        # a re-checksummed stream is a different well-formed file: it may decode to another image of
        # the declared size, but the rANS decoder must never crash, hang or return garbage shapes
        assert pixels.shape == state["pixels"].shape and 0 <= float(pixels.min()) <= float(pixels.max()) <= 1  # type: ignore[attr-defined]
        return
    assert torch.equal(pixels, state["pixels"])  # type: ignore[arg-type]
