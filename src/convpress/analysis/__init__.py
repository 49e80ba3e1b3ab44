"""Network analysis: cost per layer, receptive fields (theoretical and effective), latency."""

from convpress.analysis.cost import LayerCost, layer_costs
from convpress.analysis.latency import measure_latency
from convpress.analysis.receptive import ReceptiveField, effective_receptive_field, measured_receptive_field, receptive_fields

__all__ = [
    "LayerCost",
    "layer_costs",
    "measure_latency",
    "ReceptiveField",
    "receptive_fields",
    "effective_receptive_field",
    "measured_receptive_field",
]
