"""Fast image processing: imitate slow image operators with small fully convolutional networks.

Chen, Xu, Koltun (ICCV 2017) train a context aggregation network (CAN) to reproduce an image
operator; Wu et al. (CVPR 2018) run such a network at low resolution and upsample its result
with a learned guided filter. Submodules (imported on use, so ``import convpress`` stays fast):

* :mod:`convpress.fip.operators` -- the ten reference operators, in one registry;
* :mod:`convpress.fip.pairs` -- (input, operator output) training pairs cached on disk;
* :mod:`convpress.fip.train` -- resumable training with validation PSNR;
* :mod:`convpress.fip.apply` -- running a network (exactly tiled) or the reference;
* :mod:`convpress.fip.weights` -- safetensors files that name their model and operator.

The models themselves live in :mod:`convpress.models.can` (``can24``, ``can32``, ``gf-can24``, ``gf-can32``).
"""

__all__: list[str] = []
