"""Fast image processing: imitate slow image operators with small fully convolutional networks.

Chen, Xu, Koltun (ICCV 2017) train a context aggregation network (CAN) to reproduce an image
operator; Wu et al. (CVPR 2018) run such a network at low resolution and upsample its result
with a learned guided filter. Submodules (imported on use, so ``import convpress`` stays fast):

* :mod:`convpress.fip.operators` -- the ten reference operators, in one registry;
* :mod:`convpress.fip.pairs` -- (input, operator output) training pairs cached on disk;
* :mod:`convpress.fip.train` -- resumable training with validation PSNR;
* :mod:`convpress.fip.apply` -- running a network (exactly tiled) or the reference;
* :mod:`convpress.fip.weights` -- safetensors files that name their model and operator.

The models themselves live in :mod:`convpress.models.can` (``can24``, ``can32``, ``gf-can24``, ``gf-can32``,
``gf-can24-res``, ``gf-can24-global``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convpress.core.lazy import lazy_exports

# public name -> module that defines it (loaded on first use); never the name of a submodule, which
# importing the submodule would bind in its place (the training function is convpress.fip.train.train)
_EXPORTS: dict[str, str] = {
    "apply_network": ".apply",
    "run_reference": ".apply",
    "load_network": ".weights",
    "save_network": ".weights",
    "shipped_weights": ".weights",
    "shipped_operators": ".weights",
    "get_operator": ".operators",
    "operator_names": ".operators",
    "register_operator": ".operators",
    "FipTrainConfig": ".train",
    "build_pairs": ".pairs",
    "load_pairs": ".pairs",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from convpress.fip.apply import apply_network, run_reference
    from convpress.fip.operators import get_operator, operator_names, register_operator
    from convpress.fip.pairs import build_pairs, load_pairs
    from convpress.fip.train import FipTrainConfig
    from convpress.fip.weights import load_network, save_network, shipped_operators, shipped_weights
