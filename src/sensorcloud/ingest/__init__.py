"""The ingest service: the write side of readings (MQTT subscriber, payload parsing, batched writer)."""
