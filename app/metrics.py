"""Operations metrics, and the exposition that stays right when several processes serve one port.

`serve --workers N` runs N processes behind one port, and a scrape reaches one of them. prometheus-client's
multiprocess mode makes every process write its samples to files in `PROMETHEUS_MULTIPROC_DIR`, and the
`/metrics` answer of any process adds up all of them, so counters add up whichever worker is scraped.
`bankfeeds-bff serve` manages that directory (see app/cli.py); a single process keeps the in-memory registry.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import REGISTRY

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Gauges read from the database hold the same value in every process that samples them: the most recent wins.
CODAT_CHECK_UP = Gauge(
    "bff_codat_check_up",
    "Background checks of Codat (reachable), the integration (enabled), the data types (on): 1 ok, 0 failed.",
    ["check"],
    multiprocess_mode="mostrecent",
)
CODAT_CHECK_TIMESTAMP = Gauge(
    "bff_codat_check_timestamp_seconds",
    "When this process last finished checking Codat (Unix time).",
    multiprocess_mode="max",
)
OUTBOX_TRANSACTIONS = Gauge(
    "bff_outbox_transactions",
    "Transactions in the outbox by status (queued, sending, delivered, failed, refused_by_codat).",
    ["status"],
    multiprocess_mode="mostrecent",
)
OUTBOX_OLDEST_QUEUED_AGE = Gauge(
    "bff_outbox_oldest_queued_age_seconds",
    "Age of the oldest transaction not yet delivered (queued or sending); 0 when none.",
    multiprocess_mode="mostrecent",
)
WEBHOOK_BACKLOG = Gauge(
    "bff_webhook_backlog_events",
    "Webhook events stored but not applied yet.",
    multiprocess_mode="mostrecent",
)
WEBHOOK_BACKLOG_AGE = Gauge(
    "bff_webhook_backlog_age_seconds",
    "Age of the oldest webhook event stored but not applied yet; 0 when none.",
    multiprocess_mode="mostrecent",
)
LINK_REFRESHES = Counter("bff_link_refreshes_total", "Link URLs read afresh from Codat (a lapsed OTP).")
INBOUND_RATE_LIMITED = Counter(
    "bff_codat_rate_limited_responses_total",
    "429 answers received from Codat (each attempt, retries included).",
)
RETENTION_DELETED = Counter(
    "bff_retention_deleted_rows_total", "Rows deleted by the retention prune, by table.", ["table"]
)
RETENTION_LAST_RUN = Gauge(
    "bff_retention_last_run_timestamp_seconds",
    "When a retention prune last finished (Unix time).",
    multiprocess_mode="max",
)


def registry() -> CollectorRegistry:
    """What a scrape of this process shows: every process's samples in multiprocess mode, else its own."""
    if MULTIPROC_ENV not in os.environ:
        return REGISTRY
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST
