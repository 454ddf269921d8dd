"""Prometheus metrics: their definitions, the hooks services call, and the /metrics exposition.

Several uvicorn workers: `pacs-ext serve` sets PROMETHEUS_MULTIPROC_DIR before the workers
start, prometheus-client then keeps every worker's values in files there, and a scrape served
by any worker reads them all (MultiProcessCollector). Only counters and histograms are
recorded per process; gauges are computed at scrape time, so no gauge needs a multiprocess mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from .. import __version__
from .multiproc import multiprocess_dir

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Outcome classes of storage operations, named like the S3 metrics they stand for.
OK, CLIENT_ERROR, SERVER_ERROR = "2xx", "4xx", "5xx"

HTTP_REQUESTS = Counter(
    "pacs_http_requests",
    "HTTP requests answered, by route template, method and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "pacs_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
STORAGE_OPERATIONS = Counter(
    "pacs_storage_operations",
    "Object-storage operations by S3 operation name and outcome class (2xx, 4xx, 5xx).",
    ["operation", "outcome"],
)
STORAGE_DURATION = Histogram(
    "pacs_storage_operation_duration_seconds",
    "Latency of object-storage I/O operations (URL signing is pure CPU and not timed).",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SIGNED_URLS = Counter(
    "pacs_signed_urls",
    "Signed URLs issued, by the HTTP method they allow (multipart part uploads are PUT).",
    ["method"],
)
UPLOAD_COMPLETIONS = Counter(
    "pacs_upload_completions",
    "Mask-group completions: completed (every file verified) or failed (files missing or "
    "mismatched; the client gets a 409).",
    ["outcome"],
)
UPLOAD_FILES_VERIFIED = Counter(
    "pacs_upload_files_verified", "Files verified in storage and recorded as masks at complete."
)
UPLOAD_BYTES_VERIFIED = Counter(
    "pacs_upload_bytes_verified", "Bytes of the files verified and recorded at complete."
)
UPLOAD_FILES_REJECTED = Counter(
    "pacs_upload_files_rejected",
    "Declared files a complete call found missing or mismatched (size or MD5).",
    ["reason"],
)
UPLOAD_COMPLETION_DURATION = Histogram(
    "pacs_upload_completion_duration_seconds",
    "Time of a successful complete call: listing, verification, recording, metadata.json.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

# Where a latency tail comes from (observability/waits.py).
EVENT_LOOP_LAG = Histogram(
    "pacs_event_loop_lag_seconds",
    "How late a 0.1 s timer fires in the server's event loop: time the loop spent on other "
    "requests' CPU work, or the process waited for a CPU core.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
DB_POOL_IN_USE = Histogram(
    "pacs_db_pool_in_use",
    "Database connections checked out of the pool, sampled every 0.1 s; a request waits for "
    "one when all database.pool_size + 10 are in use.",
    buckets=(0, 1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 25, 30, 40, 60),
)
DB_POOL_WAIT = Histogram(
    "pacs_db_pool_wait_seconds",
    "Time a checkout waited for a database connection: for a free one when all "
    "database.pool_size + 10 are in use, or for a new one to open.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ADMISSION_WAIT = Histogram(
    "pacs_admission_wait_seconds",
    "Time an API request waited for one of server.max_active_requests slots before its work "
    "began (http/admission.py).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_CONNECTION_HELD = Histogram(
    "pacs_db_connection_held_seconds",
    "Time a database connection stayed checked out of the pool, from checkout to its return.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_STATEMENT_DURATION = Histogram(
    "pacs_db_statement_duration_seconds",
    "Time from sending a SQL statement to its result (COMMIT not included), by its first "
    "word; with the loop lag and the pool use, it tells where a request waited.",
    ["statement"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

MASK_GROUP_STATUSES = ("pending", "complete", "expired")

# Series that alerts divide or take increase() of exist from the start (at zero).
for _outcome in ("completed", "failed"):
    UPLOAD_COMPLETIONS.labels(outcome=_outcome)
for _reason in ("missing", "mismatched"):
    UPLOAD_FILES_REJECTED.labels(reason=_reason)


# ---- hooks ----------------------------------------------------------------------------------


def record_completion(files: int, total_bytes: int, seconds: float) -> None:
    UPLOAD_COMPLETIONS.labels(outcome="completed").inc()
    UPLOAD_FILES_VERIFIED.inc(files)
    UPLOAD_BYTES_VERIFIED.inc(total_bytes)
    UPLOAD_COMPLETION_DURATION.observe(seconds)


def record_completion_failure(missing: int, mismatched: int) -> None:
    UPLOAD_COMPLETIONS.labels(outcome="failed").inc()
    if missing:
        UPLOAD_FILES_REJECTED.labels(reason="missing").inc(missing)
    if mismatched:
        UPLOAD_FILES_REJECTED.labels(reason="mismatched").inc(mismatched)


# ---- exposition -----------------------------------------------------------------------------


def scrape_time_families(mask_groups: Mapping[str, int] | None) -> list[Metric]:
    """Gauges computed when scraped; mask_groups is None when the database did not answer."""
    info = GaugeMetricFamily("pacs_build_info", "Version of this server.", labels=["version"])
    info.add_metric([__version__], 1)
    families: list[Metric] = [info]
    up = GaugeMetricFamily(
        "pacs_metrics_database_up",
        "1 if the database answered the scrape-time queries (mask groups by status), else 0.",
    )
    up.add_metric([], 0 if mask_groups is None else 1)
    families.append(up)
    if mask_groups is not None:
        groups = GaugeMetricFamily(
            "pacs_mask_groups", "Mask groups in the database, by status.", labels=["status"]
        )
        for status in sorted({*MASK_GROUP_STATUSES, *mask_groups}):
            groups.add_metric([status], mask_groups.get(status, 0))
        families.append(groups)
    return families


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """The text exposition of every metric (all workers' in multiprocess mode) plus extra.

    Blocking (reads the multiprocess files): call it in a worker thread.
    """
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Families(REGISTRY.collect()))
    registry.register(_Families(extra))
    return generate_latest(registry)
