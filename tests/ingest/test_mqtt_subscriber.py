"""The ingest's own MQTT client against a real Mosquitto (the project's config) and the monolith's
embedded amqtt broker: acknowledgement only when told, never on a later connection, persistent
sessions, shared subscriptions, in-order delivery."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from sensorcloud.ingest.mqtt import MqttSubscriber, SubscriberConfig
from sensorcloud.ingest.writer import Ack
from tests.support.mosquitto import TestBroker, start_test_broker, until
from tests.support.mqtt import publish

TIMEOUT = 10.0


@pytest.fixture
def broker() -> Iterator[TestBroker]:
    server = start_test_broker()
    yield server
    server.remove()


@dataclass
class Inbox:
    """What a subscriber was handed: (topic, payload) in order, and the acks it was given."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    acks: list[Ack | None] = field(default_factory=list)
    auto_ack: bool = False
    sync: bool = True  # take messages through `offer` (the hot path) rather than the handler

    def offer(self, topic: str, payload: bytes, _received_at: datetime, ack: Ack | None) -> bool:
        if not self.sync:
            return False
        self._take(topic, payload, ack)
        return True

    async def handle(self, topic: str, payload: bytes, _received_at: datetime, ack: Ack | None) -> None:
        await asyncio.sleep(0)
        self._take(topic, payload, ack)

    def _take(self, topic: str, payload: bytes, ack: Ack | None) -> None:
        self.messages.append((topic, payload))
        self.acks.append(ack)
        if self.auto_ack and ack is not None:
            ack()

    def payloads(self) -> list[bytes]:
        return [p for _, p in self.messages]


def config(broker: TestBroker, client_id: str, **kw: object) -> SubscriberConfig:
    return SubscriberConfig(
        host="127.0.0.1",
        port=broker.port,
        username=broker.service_user,
        password=broker.service_password,
        client_id=client_id,
        **kw,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def subscribed(cfg: SubscriberConfig, inbox: Inbox) -> AsyncIterator[MqttSubscriber]:
    sub = MqttSubscriber(cfg, inbox.handle, offer=inbox.offer)
    await sub.start()
    try:
        await asyncio.wait_for(sub.connected.wait(), TIMEOUT)
        yield sub
    finally:
        await sub.pause()
        await sub.stop()


async def send(broker: TestBroker, topic: str, payloads: list[bytes]) -> None:
    await publish(
        broker.port,
        broker.service_user,
        broker.service_password,
        [(topic, p) for p in payloads],
        client_id=f"pub-{secrets.token_hex(4)}",
    )


async def arrived(inbox: Inbox, count: int) -> None:
    await until(lambda: len(inbox.messages) >= count, TIMEOUT)


@pytest.mark.parametrize("sync", [True, False], ids=["offer", "handler"])
async def test_messages_arrive_in_order_and_the_session_survives_a_restart(
    broker: TestBroker, sync: bool
) -> None:
    cfg = config(broker, "ingest-order", shared_group="grp")
    inbox = Inbox(auto_ack=True, sync=sync)
    payloads = [str(i).encode() for i in range(300)]
    async with subscribed(cfg, inbox) as sub:
        assert sub.subscription == "$share/grp/#"
        await send(broker, "t/a", payloads)
        await arrived(inbox, 300)
    assert inbox.payloads() == payloads

    # acknowledged: a new connection of the same session gets nothing again, only what came since
    await send(broker, "t/a", [b"while away"])  # queued in the persistent session
    later = Inbox(auto_ack=True, sync=sync)
    async with subscribed(cfg, later):
        await arrived(later, 1)
        await asyncio.sleep(0.3)
    assert later.payloads() == [b"while away"]


async def test_unacknowledged_messages_come_again_and_late_acks_are_not_sent(broker: TestBroker) -> None:
    cfg = config(broker, "ingest-late-acks", shared_group="grp")
    inbox = Inbox()
    async with subscribed(cfg, inbox) as sub:
        await send(broker, "t/b", [b"one", b"two"])
        await arrived(inbox, 2)
        first_acks = list(inbox.acks)
        assert all(a is not None for a in first_acks)

        sub._connection.close()  # type: ignore[union-attr]  # the connection drops
        await until(lambda: not sub.connected.is_set(), TIMEOUT)
        for ack in first_acks:  # committed only now: the packet ids belong to the old connection
            assert ack is not None
            ack()
        await asyncio.wait_for(sub.connected.wait(), TIMEOUT)
        await arrived(inbox, 4)  # the broker delivers both again on the new connection
        assert inbox.payloads() == [b"one", b"two", b"one", b"two"]
        for ack in inbox.acks[2:]:
            assert ack is not None
            ack()
        await asyncio.sleep(0.3)
    again = Inbox(auto_ack=True)
    async with subscribed(cfg, again):
        await send(broker, "t/b", [b"three"])
        await arrived(again, 1)
        await asyncio.sleep(0.3)
    assert again.payloads() == [b"three"]  # one and two were acknowledged on the second connection


async def test_plain_subscription_without_shared_group_and_qos0(broker: TestBroker) -> None:
    inbox = Inbox(auto_ack=True)
    async with subscribed(config(broker, "ingest-plain", shared_group=None), inbox) as sub:
        assert sub.subscription == "#"
        await publish(
            broker.port,
            broker.service_user,
            broker.service_password,
            [("q/0", b"fire and forget")],
            client_id="pub-q0",
            qos=0,
        )
        await arrived(inbox, 1)
    assert inbox.messages == [("q/0", b"fire and forget")]
    assert inbox.acks == [None]  # nothing to acknowledge at QoS 0


async def test_reconnects_when_the_broker_comes_back(broker: TestBroker) -> None:
    inbox = Inbox(auto_ack=True)
    async with subscribed(config(broker, "ingest-reconnect", shared_group=None), inbox) as sub:
        broker.restart()
        await asyncio.wait_for(sub.connected.wait(), 20)
        await send(broker, "t/c", [b"after restart"])
        await arrived(inbox, 1)
    assert inbox.payloads() == [b"after restart"]


async def test_refused_credentials_retry_without_connecting(broker: TestBroker) -> None:
    cfg = SubscriberConfig("127.0.0.1", broker.port, broker.service_user, "wrong", "ingest-refused")
    sub = MqttSubscriber(cfg, Inbox().handle)
    await sub.start()
    try:
        await asyncio.sleep(1.0)
        assert not sub.connected.is_set()
    finally:
        await sub.stop()
