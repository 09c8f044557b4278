"""Reading an app's metrics (its own in-memory registry) in tests."""

from __future__ import annotations

from stepup_bff.ops.metrics import Metrics


def sample_value(metrics: Metrics, name: str, **labels: str) -> float:
    """The value of the series `name` with exactly these labels, or 0 if it was never recorded."""
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0
