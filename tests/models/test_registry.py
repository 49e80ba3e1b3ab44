"""Every registered model is tested the moment it is registered: it builds, runs and traces."""

from __future__ import annotations

import pytest
import torch

from convpress.analysis import layer_costs, receptive_fields
from convpress.models import MODELS, create_model, model_names

#: the example input of each task a model may be registered for (register_model(name, task=...))
TASK_INPUTS = {
    "mnist": ((1, 1, 28, 28), (1, 10)),
    "image-to-image": ((1, 3, 64, 64), (1, 3, 64, 64)),
    "imagenet": ((1, 3, 64, 64), (1, 1000)),
    "cifar": ((1, 3, 32, 32), (1, 10)),
    "segmentation": ((1, 3, 64, 64), (1, 19, 64, 64)),
}


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_builds_runs_and_traces(name: str) -> None:
    task = MODELS.meta(name).get("task")
    assert task in TASK_INPUTS, f"register {name} with one of the tasks {sorted(TASK_INPUTS)} (or add its example input here)"
    shape, out_shape = TASK_INPUTS[task]
    model = create_model(name).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == out_shape and torch.isfinite(y).all()
    assert sum(r.macs for r in layer_costs(model, x)) > 0  # convpress analyze can cost it
    if MODELS.meta(name).get("traceable", True):
        assert receptive_fields(model)  # and trace it (torch.fx)
    else:  # data-dependent control flow (e.g. a resize to a size computed from the input), declared at registration
        with pytest.raises(ValueError, match="torch.fx cannot trace it"):
            receptive_fields(model)
