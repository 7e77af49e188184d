"""Prometheus metrics of the write side."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "sensorcloud_ingest_messages_total",
            "Messages taken in, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.readings = Counter("sensorcloud_ingest_readings_total", "Readings stored", registry=registry)
        self.duplicates = Counter(
            "sensorcloud_ingest_duplicate_readings_total",
            "Readings skipped as already stored",
            registry=registry,
        )
        self.dead_letters = Counter(
            "sensorcloud_ingest_dead_letters_total",
            "Messages sent to the dead-letter table",
            registry=registry,
        )
        self.write_errors = Counter(
            "sensorcloud_ingest_write_errors_total", "Failed batch writes (retried)", registry=registry
        )
        self.batch_seconds = Histogram(
            "sensorcloud_ingest_batch_seconds",
            "Time to commit one batch",
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.pending = Gauge(
            "sensorcloud_ingest_pending_messages", "Messages waiting for a commit", registry=registry
        )
