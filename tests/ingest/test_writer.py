"""The batch writer's scheduling, with a store that answers when told: acknowledgements only after
the commit and in arrival order, batches that grow with the backlog, two in flight only then."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from sensorcloud.ingest.metrics import IngestMetrics
from sensorcloud.ingest.store import DeadRow, Row, WriteResult
from sensorcloud.ingest.writer import BatchWriter, Item

NOW = datetime.now(UTC)


class GatedStore:
    """Each write waits until the test releases it (by batch number); failures on request."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.fail_next = 0
        self.written = asyncio.Event()  # set at every write

    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("database away")
        self.batches.append([r.dedup_key for r in rows])
        self.written.set()
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return WriteResult(len(rows), 0)

    async def apply_retention(self, days: int) -> int:
        return 0

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def item(n: int, acked: list[int]) -> Item:
    row = Row(f"k{n}", NOW, "t", "d", float(n), None, NOW, 1)
    return Item([row], None, lambda: acked.append(n))


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def started(store: GatedStore, **settings: Any) -> BatchWriter:
    writer = BatchWriter(store, IngestMetrics(CollectorRegistry()), **settings)
    writer.start()
    return writer


async def batches_written(store: GatedStore, count: int = 1) -> list[list[str]]:
    """The store's batches once `count` were written, or after 10 s (a slow machine)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while len(store.batches) < count:
                store.written.clear()
                await store.written.wait()
    return store.batches


async def test_acks_follow_commits_in_order_with_two_batches_in_flight() -> None:
    store = GatedStore()
    writer = BatchWriter(store, IngestMetrics(CollectorRegistry()), batch_size=2, interval_s=60, max_batch=3)
    writer.start()
    acked: list[int] = []
    for n in range(2):
        writer.add(item(n, acked))
    await settle()
    assert store.batches == [["k0", "k1"]]  # batch_size reached with the writer idle

    for n in range(2, 5):
        writer.add(item(n, acked))  # 2 waiting is not enough while one is written ...
    await settle()
    assert store.batches == [["k0", "k1"], ["k2", "k3", "k4"]]  # ... a full max_batch is

    for n in range(5, 9):
        writer.add(item(n, acked))
    await settle()
    assert len(store.batches) == 2  # two in flight: the rest waits

    store.gates[1].set()  # the second commits first: its acks wait for the first
    await settle()
    assert acked == []
    store.gates[0].set()
    await settle()
    assert acked == [0, 1, 2, 3, 4]
    assert store.batches[2] == ["k5", "k6", "k7"]  # everything waiting, up to max_batch
    store.gates[2].set()
    await settle()
    assert len(store.batches) == 3  # one left: less than batch_size, it waits for the interval
    closing = asyncio.create_task(writer.close())  # ... or for the writer to close
    await settle()
    assert store.batches[3] == ["k8"]
    store.gates[3].set()
    await closing
    assert acked == list(range(9))


async def test_nothing_is_acknowledged_while_writes_fail() -> None:
    store = GatedStore()
    store.fail_next = 2
    writer = BatchWriter(store, IngestMetrics(CollectorRegistry()), batch_size=1, interval_s=60)
    writer.start()
    acked: list[int] = []
    writer.add(item(0, acked))
    await asyncio.sleep(0.1)
    assert not writer.healthy
    assert acked == []
    await asyncio.sleep(0.6)  # retried after 0.2 s and 0.4 s
    assert store.batches == [["k0"]]
    store.gates[0].set()
    await settle()
    assert acked == [0]
    assert writer.healthy
    await writer.close()


async def test_a_lone_message_waits_at_most_the_interval() -> None:
    store = GatedStore()
    writer = BatchWriter(store, IngestMetrics(CollectorRegistry()), batch_size=100, interval_s=0.05)
    writer.start()
    acked: list[int] = []
    writer.add(item(0, acked))
    await asyncio.sleep(0.02)
    assert store.batches == []
    await asyncio.sleep(0.1)
    assert store.batches == [["k0"]]
    store.gates[0].set()
    await writer.close()
    assert acked == [0]


async def test_a_pause_in_the_stream_writes_a_partial_batch() -> None:
    """Three messages, then nothing: written once no message came for idle_s, long before the interval."""
    store = GatedStore()
    writer = started(store, batch_size=100, interval_s=60, idle_s=0.05)
    acked: list[int] = []
    for n in range(3):
        writer.add(item(n, acked))
    assert await batches_written(store) == [["k0", "k1", "k2"]]  # the rule says after 50 ms
    store.gates[0].set()
    await writer.close()
    assert acked == [0, 1, 2]


async def test_no_pause_rule_waits_for_the_interval() -> None:
    store = GatedStore()
    writer = started(store, batch_size=100, interval_s=60, idle_s=0)
    acked: list[int] = []
    writer.add(item(1, acked))
    await asyncio.sleep(0.3)
    assert store.batches == []  # neither 100 messages nor 60 s
    writer._interval = 0.0  # now it is due: the writer wakes at its next look
    writer._wake.set()
    assert await batches_written(store) == [["k1"]]
    store.gates[0].set()
    await writer.close()


async def test_a_steady_stream_is_not_cut_by_the_pause_rule() -> None:
    """Messages every 5 ms, idle_s 0.5 s: one batch when the stream stops, not one per message."""
    store = GatedStore()
    writer = started(store, batch_size=1000, interval_s=60, idle_s=0.5)
    acked: list[int] = []
    for n in range(40):
        writer.add(item(n, acked))
        await asyncio.sleep(0.005)
    assert store.batches == []
    assert await batches_written(store) == [[f"k{n}" for n in range(40)]]
    store.gates[0].set()
    await writer.close()
    assert acked == list(range(40))


async def test_a_pause_starts_a_second_batch_beside_the_one_being_written() -> None:
    """The messages before a pause do not wait for the commit in progress; acks stay in order."""
    store = GatedStore()
    writer = started(store, batch_size=2, interval_s=60, max_batch=100, idle_s=0.05)
    acked: list[int] = []
    writer.add(item(0, acked))
    writer.add(item(1, acked))  # batch_size: the first batch, held at its gate
    await settle()
    writer.add(item(2, acked))  # then the stream pauses
    assert await batches_written(store, 2) == [
        ["k0", "k1"],
        ["k2"],
    ]  # written alongside, the first still open
    store.gates[1].set()
    await settle()
    assert acked == []  # committed second: acknowledged after the first
    store.gates[0].set()
    await writer.close()
    assert acked == [0, 1, 2]


class RecordingStore(GatedStore):
    """Commits each batch at once."""

    async def write(self, rows: Sequence[Row], dead: Sequence[DeadRow]) -> WriteResult:
        self.batches.append([r.dedup_key for r in rows])
        return WriteResult(len(rows), 0)


async def _message_read_late_by_a_busy_loop() -> list[list[str]]:
    store = RecordingStore()
    writer = started(store, batch_size=100, interval_s=60, idle_s=0.02)
    acked: list[int] = []
    receiver, sender = socket.socketpair()
    receiver.setblocking(False)
    loop = asyncio.get_running_loop()

    def readable() -> None:  # as the MQTT connection's data_received: the message goes straight in
        receiver.recv(64)
        writer.add(item(1, acked))

    loop.add_reader(receiver.fileno(), readable)
    try:
        await settle()  # the writer waits for a first message
        sender.send(b"x")  # the second one is in the socket ...
        writer.add(item(0, acked))  # ... as the first one wakes the writer ...
        time.sleep(0.05)  # noqa: ASYNC251  # ... and the loop is busy first, past the pause rule's 20 ms
        await asyncio.sleep(0.1)  # both are written by now, the pause rule's 20 ms being long past
        await writer.close()
        return store.batches
    finally:
        loop.remove_reader(receiver.fileno())
        receiver.close()
        sender.close()


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_busy_event_loop_is_not_taken_for_a_pause(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    """A message waited in a socket while the loop was busy for longer than idle_s: it is read
    before the writer decides that the stream paused, and goes in the same batch. (The writer's
    wake-up, scheduled before the busy step, runs before the loop reads its sockets: the first look
    saw a pause that was not one, and under load the ingest cut a small extra batch after most big
    ones, while the loop encoded them.)"""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(_message_read_late_by_a_busy_loop()) == [["k0", "k1"]]
