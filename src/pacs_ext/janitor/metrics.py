"""Prometheus metrics of janitor runs, in the default registry (served by /metrics)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, Counter, Gauge, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .report import JanitorReport

# Labelless gauges open their multiprocess file at import: any command (db upgrade, token...)
# imports this module, and an operator's PROMETHEUS_MULTIPROC_DIR may not exist yet.
if _multiproc := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(_multiproc).mkdir(parents=True, exist_ok=True)

RUNS = Counter(
    "pacs_janitor_runs",
    "Janitor runs, by mode (apply, dry_run) and outcome (ok, error, skipped).",
    ["mode", "outcome"],
)
FOUND = Gauge(
    "pacs_janitor_found",
    "What the last janitor run found, by kind (expired_groups, orphan_objects, ...).",
    ["kind"],
    multiprocess_mode="mostrecent",
)
ACTIONS = Counter(
    "pacs_janitor_actions",
    "Janitor actions taken, by kind (groups expired, objects deleted, uploads aborted, ...).",
    ["kind"],
)
ORPHAN_BYTES = Gauge(
    "pacs_janitor_orphan_bytes",
    "Bytes of the orphan objects the last janitor run found.",
    multiprocess_mode="mostrecent",
)
LAST_RUN = Gauge(
    "pacs_janitor_last_run_timestamp_seconds",
    "When the last janitor run finished (Unix time).",
    multiprocess_mode="mostrecent",
)
LAST_DURATION = Gauge(
    "pacs_janitor_last_run_duration_seconds",
    "How long the last janitor run took.",
    multiprocess_mode="mostrecent",
)


def mode(apply: bool) -> str:
    return "apply" if apply else "dry_run"


def publish(report: JanitorReport) -> None:
    for name in report.FINDINGS:
        finding = report.finding(name)
        FOUND.labels(kind=name).set(finding.found)
        if finding.acted:
            ACTIONS.labels(kind=name).inc(finding.acted)
    if report.objects_deleted:
        ACTIONS.labels(kind="objects_deleted").inc(report.objects_deleted)
    ORPHAN_BYTES.set(report.orphan_bytes)
    if report.finished_at is not None:
        LAST_RUN.set(report.finished_at.timestamp())
        LAST_DURATION.set((report.finished_at - report.started_at).total_seconds())
    RUNS.labels(mode=mode(report.apply), outcome="error" if report.errors else "ok").inc()


class _JanitorMetrics(Collector):
    def collect(self) -> Iterator[Metric]:
        return (m for m in REGISTRY.collect() if m.name.startswith("pacs_janitor_"))


def write_textfile(path: Path) -> None:
    """For a run from cron: node_exporter's textfile collector picks this file up."""
    write_to_textfile(str(path), _JanitorMetrics())
