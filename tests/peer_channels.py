"""A real peer Channel served on one accepted loopback connection (for the channel tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from chimera_tk.net.peer.channel import Channel
from chimera_tk.net.peer.tls import TlsFiles, server_context
from chimera_tk.net.peer.tls_stream import TlsStream

HANDSHAKE_TIMEOUT_S = 10.0


def serve_one_channel(listener: socket.socket, tls: TlsFiles, peer_id: int,
                      on_event: Callable[[Channel, object], None],
                      on_closed: Callable[[Channel, str], None],
                      idle_timeout: float = 60.0) -> tuple[threading.Thread, list[Channel]]:
    """Accept one connection on ``listener`` in a thread, complete the TLS handshake as the
    server and start the real Channel on it; the list receives the channel once it runs."""
    channels: list[Channel] = []

    def serve() -> None:
        raw, address = listener.accept()
        stream = TlsStream(raw, server_context(tls), server_side=True)
        stream.settimeout(HANDSHAKE_TIMEOUT_S)
        stream.do_handshake()
        channel = Channel(stream, peer_id, address[0], outgoing=False, on_event=on_event,
                          on_closed=on_closed, idle_timeout=idle_timeout)
        channels.append(channel)
        channel.start()

    server = threading.Thread(target=serve)
    server.start()
    return server, channels


def stop_served(channels: list[Channel], listener: socket.socket) -> None:
    """Close what serve_one_channel started; each channel's I/O thread must end."""
    for channel in channels:
        channel.close("test over")
        assert channel.join(5)
    listener.close()
