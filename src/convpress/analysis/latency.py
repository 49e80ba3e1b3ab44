"""CPU latency: warm-up, then the median of repeated runs (defined on the ground floor, :mod:`convpress.core.timing`)."""

from __future__ import annotations

from convpress.core.timing import measure_latency

__all__ = ["measure_latency"]
