"""The worker's metrics in the Prometheus exposition format (`prometheus_client`).

Jobs run in a process pool, so nothing is counted in the pool's children: the
worker's main process records each job's result (`WorkerMetrics.record_job`)
as it collects it, and the HTTP exporter runs as a thread of that process,
on 127.0.0.1:9464 by default (POWERVIEW_METRICS_ADDRESS, POWERVIEW_METRICS_PORT;
port 0 turns it off). The queue gauges are read from the queue file at each
scrape, so they are current even while the worker is busy.

Exported (counters restart at 0 with the worker, as Prometheus expects):

    powerview_files_total{company, outcome}        outcome: ingested | rejected | deferred
    powerview_values_written_total{company}        points written to InfluxDB
    powerview_jobs_total{kind, outcome}            outcome: done | retry | postponed | failed
    powerview_ingest_duration_seconds              histogram, per ingested or rejected file
    powerview_upload_to_queryable_seconds          histogram, job queued → data written
    powerview_last_success_timestamp_seconds{company, device}
    powerview_queue_jobs{state}                    queued | running | failed
    powerview_queue_oldest_waiting_seconds
    powerview_build_info{version, python}
    process_*, python_*                            the usual process and runtime metrics
"""

from __future__ import annotations

import logging
import platform
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from powerview import __version__

log = logging.getLogger(__name__)

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LATENCY_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 86_400)
# An ingest job's file status → the `outcome` label of powerview_files_total.
FILE_OUTCOMES = {"success": "ingested", "error": "rejected", "deferred": "deferred"}


class QueueCollector(Collector):
    """Queue depth by state and the oldest waiting job, read at scrape time.

    A connection of its own per scrape: the exporter's thread must not share
    the worker's SQLite connection.
    """

    def __init__(self, queue_path: Path) -> None:
        self.queue_path = queue_path

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "powerview_queue_jobs", "Jobs in the queue by state", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "powerview_queue_oldest_waiting_seconds",
            "Age of the oldest queued job (0 when none waits)",
        )
        counts = dict.fromkeys(("queued", "running", "failed"), 0)
        age = 0.0
        try:
            uri = f"{self.queue_path.resolve().as_uri()}?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=5)
            try:
                for state, count in db.execute("SELECT state, count(*) FROM jobs GROUP BY state"):
                    if state in counts:
                        counts[state] = count
                (first,) = db.execute(
                    "SELECT min(enqueued_at) FROM jobs WHERE state = 'queued'"
                ).fetchone()
                age = max(0.0, time.time() - first) if first is not None else 0.0
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.warning("metrics: queue %s unreadable: %s", self.queue_path, exc)
            return
        for state, count in counts.items():
            jobs.add_metric([state], count)
        oldest.add_metric([], age)
        yield jobs
        yield oldest


class WorkerMetrics:
    """The worker's registry and metric objects; one per worker process."""

    def __init__(self, queue_path: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.files = Counter(
            "powerview_files", "Files handled by the worker", ["company", "outcome"], registry=r
        )
        self.values = Counter(
            "powerview_values_written", "Values (points) written to InfluxDB", ["company"],
            registry=r,
        )  # fmt: skip
        self.jobs = Counter("powerview_jobs", "Jobs finished", ["kind", "outcome"], registry=r)
        self.ingest_duration = Histogram(
            "powerview_ingest_duration_seconds",
            "Time to ingest one file (parse, write, move)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "powerview_upload_to_queryable_seconds",
            "From the upload's job being queued to its data written to InfluxDB",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "powerview_last_success_timestamp_seconds",
            "When a file of the device was last ingested (Unix time)",
            ["company", "device"],
            registry=r,
        )
        Info("powerview_build", "PowerView build", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        if queue_path is not None:
            r.register(QueueCollector(queue_path))
        # The process and runtime metrics the default registry would have had.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def record_job(
        self, kind: str, enqueued_at: float, result: dict[str, Any], now: float | None = None
    ) -> None:
        """Count one collected job result (called in the worker's main process).

        Never raises: a bookkeeping slip must not stop the worker recording the job.
        """
        try:
            self._record(kind, enqueued_at, result, time.time() if now is None else now)
        except Exception:
            log.exception("metrics: job result not counted: %r", result)

    def _record(self, kind: str, enqueued_at: float, result: dict[str, Any], now: float) -> None:
        outcome = str(result.get("outcome") or "failed")
        label = {"postpone": "postponed"}.get(outcome, outcome)
        self.jobs.labels(kind=kind, outcome=label).inc()
        if kind != "ingest":
            return
        status = result.get("status")
        file_outcome = FILE_OUTCOMES.get(str(status))
        company = str(result.get("company") or "")
        if file_outcome is None or not company:
            return  # gone, postponed, crashed: no file was handled
        self.files.labels(company=company, outcome=file_outcome).inc()
        if status == "deferred":
            return
        if result.get("duration_s") is not None:
            self.ingest_duration.observe(float(result["duration_s"]))
        if status == "success":
            self.values.labels(company=company).inc(int(result.get("points") or 0))
            self.latency.observe(max(0.0, now - enqueued_at))
            device = str(result.get("device_sn") or "")
            self.last_success.labels(company=company, device=device).set(now)

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Start the HTTP exporter in a thread; returns the port (useful with port 0)."""
        self._server, self._thread = start_http_server(port, addr=address, registry=self.registry)
        bound = int(self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", address, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_worker_metrics(queue_path: Path, port: int, address: str) -> WorkerMetrics | None:
    """The worker's metrics and exporter; None when turned off (port 0).

    A port that cannot be bound (another worker has it) is logged, not fatal:
    the worker still works, and Prometheus shows the target down.
    """
    if port == 0:
        return None
    metrics = WorkerMetrics(queue_path)
    try:
        metrics.serve(port, address)
    except OSError as exc:
        log.error("metrics exporter not started on %s:%d: %s", address, port, exc)
    return metrics
