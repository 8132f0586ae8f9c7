"""LAN discovery: who is on the local network, from UDP broadcast announcements (seed-compatible).

:mod:`.protocol` is the pure part (codec, peer table, schedule); :mod:`.worker` owns the sockets.
"""

from chimera_tk.net.discovery.protocol import (
    Announcement,
    AnnounceSchedule,
    ChangeKind,
    DiscoveryState,
    DiscoveryStats,
    Goodbye,
    Peer,
    PeerChange,
    PeerInfo,
    PeerTable,
    decode_datagram,
    encode_announcement,
    encode_goodbye,
)
from chimera_tk.net.discovery.worker import DiscoveryWorker, new_instance

__all__ = [
    "AnnounceSchedule",
    "Announcement",
    "ChangeKind",
    "DiscoveryState",
    "DiscoveryStats",
    "DiscoveryWorker",
    "Goodbye",
    "Peer",
    "PeerChange",
    "PeerInfo",
    "PeerTable",
    "decode_datagram",
    "encode_announcement",
    "encode_goodbye",
    "new_instance",
]
