"""Tiny randomly initialised codec models (fast) shared by the codec tests."""

from __future__ import annotations

import pytest
import torch

from convpress.codec.models import CodecModel, build_model
from convpress.codec.weights import weights_id


def tiny(name: str, seed: int = 0) -> tuple[CodecModel, str]:
    torch.manual_seed(seed)
    m = build_model(name, {"N": 8, "M": 12})
    # spread the random latents a little so that the streams carry real information
    with torch.no_grad():
        m.g_a[-1].weight.mul_(4.0)
        if name == "meanscale":  # its mean head starts at zero (= the scale hyperprior): give it means
            torch.nn.init.normal_(m.h_m.weight, std=0.5)
            torch.nn.init.normal_(m.h_m.bias, std=0.5)
    m.eval()
    m.update()
    return m, weights_id(m.state_dict())


@pytest.fixture(scope="session")
def tiny_hyperprior() -> tuple[CodecModel, str]:
    return tiny("hyperprior")


@pytest.fixture(scope="session")
def tiny_meanscale() -> tuple[CodecModel, str]:
    return tiny("meanscale")


@pytest.fixture(scope="session")
def tiny_factorized() -> tuple[CodecModel, str]:
    return tiny("factorized")


@pytest.fixture(scope="session")
def photo_crop() -> torch.Tensor:
    from convpress.data.photos import bundled_photo

    return bundled_photo("astronaut")[:, 100:190, 200:330].contiguous()  # (3, 90, 130)


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """Tiny tensors: a thread pool only adds overhead (and noise on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
