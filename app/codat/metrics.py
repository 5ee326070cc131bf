"""Prometheus metrics of the Codat calls, one observation per call (retries included)."""

from prometheus_client import Counter, Histogram

CALLS = Counter(
    "codat_calls_total",
    "Codat calls by operation and outcome (ok, rejected, unavailable, error).",
    ["operation", "outcome"],
)
LATENCY = Histogram(
    "codat_call_duration_seconds",
    "Time a Codat call took, retries and back-off included.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30),
)


def observe(operation: str, outcome: str, seconds: float) -> None:
    CALLS.labels(operation=operation, outcome=outcome).inc()
    LATENCY.labels(operation=operation).observe(seconds)
