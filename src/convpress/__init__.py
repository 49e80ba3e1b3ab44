"""convpress: make convolutional networks small and fast, and use small fast networks to
process and compress images.

The public API is re-exported here and loaded lazily, so ``import convpress`` (and
``convpress --help``) does not pay for PyTorch until a function is used::

    import convpress as cp
    cp.prune_(model, 0.9)                       # magnitude pruning, masks persist
    cp.finetune(model, loader, loss_fn, epochs=2, lr=1e-3)
    cp.quantize_(model, 5)                      # trained k-means weight sharing
    cp.save(model, "model.cpz", coder="ans")    # one real entropy-coded file
    state = cp.load("model.cpz")                # dense state_dict, bit-exact
    cp.deep_compress(model, train_loader=loader, loss_fn=loss_fn, evaluate=evaluate,
                     target_ratio=60, max_drop=1.0, out_path="model.cpz")   # the library picks the plan
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convpress.core.lazy import lazy_exports
from convpress.core.version import __version__

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ConvpressError": "convpress.core.errors",
    "ConfigError": "convpress.core.errors",
    "FileFormatError": "convpress.core.errors",
    "InputError": "convpress.core.errors",
    "ConvpressWarning": "convpress.core.errors",
    "prune_": "convpress.compress.prune",
    "sparsity": "convpress.compress.prune",
    "apply_masks_": "convpress.compress.prune",
    "sparse_vd_": "convpress.compress.variational",
    "SparseVD": "convpress.compress.variational",
    "OneShot": "convpress.compress.schedule",
    "Iterative": "convpress.compress.schedule",
    "AGP": "convpress.compress.schedule",
    "Variational": "convpress.compress.schedule",
    "quantize_": "convpress.compress.quantize",
    "bits_by_type": "convpress.compress.quantize",
    "finetune": "convpress.compress.finetune",
    "DSD": "convpress.compress.finetune",
    "Distill": "convpress.compress.distill",
    "export_onnx": "convpress.compress.export",
    "for_cpu": "convpress.compress.deploy",
    "dense_state_dict": "convpress.compress.state",
    "strip_": "convpress.compress.state",
    "save": "convpress.compress.files",
    "load": "convpress.fileformat.cpz",
    "read_info": "convpress.fileformat.cpz",
    "load_model": "convpress.models.checkpoint",
    "prune_channels_": "convpress.compress.structured",
    "factorize_": "convpress.compress.lowrank",
    "separate_": "convpress.compress.lowrank",
    "deep_compress": "convpress.compress.pipeline",
    "DeepCompressionConfig": "convpress.compress.pipeline",
    "PipelineReport": "convpress.compress.pipeline",
    "accelerate": "convpress.compress.accelerate",
    "AccelerateConfig": "convpress.compress.accelerate",
    "create_model": "convpress.models",
    "multi_transform_predict": "convpress.compress.multi_transform",
    "Identity": "convpress.compress.multi_transform",
    "HFlip": "convpress.compress.multi_transform",
    "Scale": "convpress.compress.multi_transform",
    "Zoom": "convpress.compress.multi_transform",
    "Shift": "convpress.compress.multi_transform",
    "UserTransform": "convpress.compress.multi_transform",
    "pseudo_label": "convpress.compress.pseudo_labels",
    "pseudo_label_images": "convpress.compress.pseudo_labels",
    "PseudoLabelReport": "convpress.compress.pseudo_labels",
    "Confidence": "convpress.compress.pseudo_labels",
    "KeepFraction": "convpress.compress.pseudo_labels",
    "MatchRate": "convpress.compress.pseudo_labels",
    "data_distill": "convpress.compress.data_distill",
    "DataDistillResult": "convpress.compress.data_distill",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from convpress.compress.accelerate import AccelerateConfig, accelerate
    from convpress.compress.data_distill import DataDistillResult, data_distill
    from convpress.compress.deploy import for_cpu
    from convpress.compress.distill import Distill
    from convpress.compress.export import export_onnx
    from convpress.compress.files import save
    from convpress.compress.finetune import DSD, finetune
    from convpress.compress.lowrank import factorize_, separate_
    from convpress.compress.multi_transform import HFlip, Identity, Scale, Shift, UserTransform, Zoom, multi_transform_predict
    from convpress.compress.pipeline import DeepCompressionConfig, PipelineReport, deep_compress
    from convpress.compress.prune import apply_masks_, prune_, sparsity
    from convpress.compress.pseudo_labels import Confidence, KeepFraction, MatchRate, PseudoLabelReport, pseudo_label, pseudo_label_images
    from convpress.compress.quantize import bits_by_type, quantize_
    from convpress.compress.schedule import AGP, Iterative, OneShot, Variational
    from convpress.compress.state import dense_state_dict, strip_
    from convpress.compress.structured import prune_channels_
    from convpress.compress.variational import SparseVD, sparse_vd_
    from convpress.core.errors import ConfigError, ConvpressError, ConvpressWarning, FileFormatError, InputError
    from convpress.fileformat.cpz import load, read_info
    from convpress.models import create_model
    from convpress.models.checkpoint import load_model
