"""Named Deep Compression recipes for the bundled MNIST networks (used by demo, compress, bench).

``paper`` recipes use Han et al.'s per-layer pruning rates and bit widths (Tables 2 and 3)
with their iterative prune-retrain schedule; the default recipes are convpress's: gradual
(AGP) pruning to higher sparsity and fewer bits, which the rANS coder turns into smaller files
at the same accuracy (figures in BENCHMARKS.md, from ``convpress bench deep-compression``).
``-vd`` recipes let sparse variational dropout (Molchanov et al. 2017) learn each layer's
sparsity instead of fixing it; they give the records of that benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from convpress.compress.pipeline import DeepCompressionConfig
from convpress.compress.schedule import Variational
from convpress.core.registry import Registry

__all__ = ["Recipe", "RECIPES", "DEMO_RECIPES", "get_recipe"]

#: the recipes ``convpress demo`` runs and ``convpress bench deep-compression`` measures
DEMO_RECIPES = ("lenet-300-100", "lenet-5")


@dataclass(frozen=True)
class Recipe:
    """How to train the dense baseline and how to compress it."""

    arch: str
    train_epochs: int
    train_lr: float
    config: DeepCompressionConfig
    description: str

    def quick(self) -> Recipe:
        """A tiny version for smoke tests (one epoch per stage; figures are meaningless)."""
        return replace(self, train_epochs=1, config=replace(self.config, prune_epochs=1, prune_steps=1, quant_epochs=1))


RECIPES: Registry[Recipe] = Registry("recipe")

RECIPES.register(
    "lenet-300-100",
    Recipe(
        arch="lenet-300-100",
        train_epochs=20,
        train_lr=1e-3,
        config=DeepCompressionConfig(
            prune={"fc1": 0.96, "fc2": 0.94, "fc3": 0.8},
            schedule="agp",
            prune_epochs=30,
            linear_bits=4,
            bias_bits=8,
            quant_epochs=3,
            quant_lr=1e-4,
        ),
        description="convpress: gradual pruning to 4% of fc1, 4-bit weights, rANS",
    ),
)
RECIPES.register(
    "lenet-300-100-paper",
    Recipe(
        arch="lenet-300-100",
        train_epochs=20,
        train_lr=1e-3,
        config=DeepCompressionConfig(
            prune={"fc1": 0.92, "fc2": 0.91, "fc3": 0.74},
            schedule="iterative",
            prune_steps=3,
            prune_epochs=4,
            linear_bits=5,
            bias_bits=None,
            quant_epochs=3,
            quant_lr=1e-4,
            coder="huffman",
            index_bits="paper",
        ),
        description="Han et al. 2016, Table 2: 8% of weights kept, 5-bit fc, Huffman",
    ),
)
RECIPES.register(
    "lenet-300-100-vd",
    Recipe(
        arch="lenet-300-100",
        train_epochs=20,
        train_lr=1e-3,
        config=DeepCompressionConfig(
            schedule=Variational(kl_weight=0.1),
            prune_epochs=60,
            prune_lr=1e-3,
            linear_bits=4,
            bias_bits=5,
            quant_epochs=3,
            quant_lr=1e-4,
        ),
        description="convpress: sparse variational dropout (KL x0.1, 60 epochs) learns the sparsity, 4-bit weights, rANS",
    ),
)
RECIPES.register(
    "lenet-5",
    Recipe(
        arch="lenet-5",
        train_epochs=15,
        train_lr=1e-3,
        config=DeepCompressionConfig(
            prune={"conv1": 0.4, "conv2": 0.94, "fc1": 0.985, "fc2": 0.87},
            schedule="agp",
            prune_epochs=25,
            conv_bits=5,
            linear_bits=4,
            bias_bits=5,
            quant_epochs=3,
            quant_lr=1e-4,
        ),
        description="convpress: gradual pruning to 1.5% of fc1, 5-bit conv / 4-bit fc, rANS",
    ),
)
RECIPES.register(
    "lenet-5-vd",
    Recipe(
        arch="lenet-5",
        train_epochs=15,
        train_lr=1e-3,
        config=DeepCompressionConfig(
            schedule=Variational(kl_weight=0.1),
            prune_epochs=60,
            prune_lr=1e-3,
            conv_bits=5,
            linear_bits=4,
            bias_bits=5,
            quant_epochs=3,
            quant_lr=1e-4,
        ),
        description="convpress: sparse variational dropout (KL x0.1, 60 epochs) learns the sparsity, 5-bit conv / 4-bit fc, rANS",
    ),
)
RECIPES.register(
    "lenet-5-paper",
    Recipe(
        arch="lenet-5",
        train_epochs=15,
        train_lr=1e-3,
        config=DeepCompressionConfig(
            prune={"conv1": 0.34, "conv2": 0.88, "fc1": 0.92, "fc2": 0.81},
            schedule="iterative",
            prune_steps=3,
            prune_epochs=4,
            conv_bits=8,
            linear_bits=5,
            bias_bits=None,
            quant_epochs=3,
            quant_lr=1e-4,
            coder="huffman",
            index_bits="paper",
        ),
        description="Han et al. 2016, Table 3: 8% of weights kept, 8-bit conv / 5-bit fc, Huffman",
    ),
)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (ConfigError listing the known ones otherwise)."""
    return RECIPES.get(name)
