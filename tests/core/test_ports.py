"""devstack.ports.port_is_free: a listener takes a port, connections left in TIME_WAIT do not."""

from __future__ import annotations

import socket

from sensorcloud.devstack.ports import free_port, port_is_free


def test_a_listening_port_is_taken_and_a_closed_one_with_time_wait_connections_is_free() -> None:
    port = free_port()
    server = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR, as asyncio's servers
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert not port_is_free(port)
    accepted.close()  # the server side closes first: its end stays in TIME_WAIT (what a crash leaves)
    client.recv(1)
    client.close()
    server.close()
    assert port_is_free(port)  # a bind without SO_REUSEADDR is refused here
