"""A userspace stand-in for ``tc qdisc add dev eth0 root netem loss L delay D reorder R``.

The kernel these tests run on is built without sch_netem (``tc qdisc add ... netem`` answers
"Specified qdisc kind is unknown"), but it has netfilter's NFQUEUE. So: an iptables rule in a
host's namespace queues the host's outgoing TCP packets to userspace, and this program, running
in the same namespace, gives each packet its verdict: dropped with probability ``loss``; sent at
once with probability ``reorder`` (so it overtakes the delayed ones, as netem's reorder does);
otherwise released after ``delay``. Only packet metadata crosses to userspace (COPY_META).

The nfnetlink_queue messages are built by hand (no libnetfilter_queue binding is needed):
``python -m tests.netem_queue QUEUE LOSS DELAY_MS REORDER [SEED]`` prints ``ready`` once bound and,
when its stdin closes, releases what it still holds and prints a JSON summary.
:class:`Impairment` sets up the rule and the process for a :class:`tests.netns.Host`.
"""

from __future__ import annotations

import heapq
import json
import random
import select
import socket
import struct
import sys
import time
from typing import Any

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_DROP, NF_ACCEPT = 0, 1


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attributes: list[bytes], flags: int = NLM_F_REQUEST,
             seq: int = 0) -> bytes:
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + b"".join(attributes)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0)
    return header + body


class QueueLink:
    """One bound NFQUEUE: packet ids in, verdicts out."""

    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 * 1024 * 1024)  # SO_RCVBUFFORCE (root)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self._configure(_attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND,
                                                             socket.AF_INET)), 1)
        self._configure(_attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)), 2)
        self._configure(_attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 65536)), 3)

    def _configure(self, attribute: bytes, seq: int) -> None:
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, [attribute],
                                NLM_F_REQUEST | NLM_F_ACK, seq))
        reply = self.sock.recv(65536)
        _length, kind = struct.unpack_from("=IH", reply)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, 16)
            if error:
                raise OSError(-error, f"NFQUEUE {self.queue} configuration refused")

    def packet_ids(self) -> list[int]:
        """The ids of the packets in one read (there may be several messages in it)."""
        data = self.sock.recv(1 << 20)
        ids, offset = [], 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                position, end = offset + 20, offset + length
                while position + 4 <= end:
                    attr_length, attr_kind = struct.unpack_from("=HH", data, position)
                    if attr_length < 4:
                        break
                    if attr_kind & 0x3FFF == NFQA_PACKET_HDR:
                        ids.append(struct.unpack_from("!I", data, position + 4)[0])
                        break
                    position += (attr_length + 3) & ~3
            offset += (length + 3) & ~3
        return ids

    def verdict(self, packet_id: int, verdict: int) -> None:
        self.sock.send(_message(NFQNL_MSG_VERDICT, self.queue,
                                [_attribute(NFQA_VERDICT_HDR,
                                            struct.pack("!II", verdict, packet_id))]))


def serve(queue: int, loss: float, delay_s: float, reorder: float, seed: int) -> dict[str, Any]:
    link = QueueLink(queue)
    chance = random.Random(seed)
    held: list[tuple[float, int]] = []
    counts = {"packets": 0, "dropped": 0, "reordered": 0, "delayed": 0}
    print("ready", flush=True)
    stdin_open = True
    while stdin_open:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        readable, _, _ = select.select([link.sock, sys.stdin], [], [], wait)
        if link.sock in readable:
            now = time.monotonic()
            for packet_id in link.packet_ids():
                counts["packets"] += 1
                roll = chance.random()
                if roll < loss:
                    counts["dropped"] += 1
                    link.verdict(packet_id, NF_DROP)
                elif roll < loss + reorder * (1 - loss):
                    counts["reordered"] += 1
                    link.verdict(packet_id, NF_ACCEPT)
                else:
                    counts["delayed"] += 1
                    heapq.heappush(held, (now + delay_s, packet_id))
        if sys.stdin in readable and not sys.stdin.readline():
            stdin_open = False
        now = time.monotonic()
        while held and (held[0][0] <= now or not stdin_open):
            link.verdict(heapq.heappop(held)[1], NF_ACCEPT)
    return counts


class Impairment:
    """netem-like loss, delay and reorder on everything TCP ``host`` sends, until :meth:`stop`."""

    def __init__(self, host: Any, *, loss: float = 0.0, delay_ms: float = 0.0,
                 reorder: float = 0.0, queue: int = 7, seed: int = 1) -> None:
        self.host = host
        self._rule = ["OUTPUT", "-p", "tcp", "-j", "NFQUEUE", "--queue-num", str(queue)]
        self._process = host.python("-m", "tests.netem_queue", str(queue), str(loss),
                                    str(delay_ms), str(reorder), str(seed))
        assert self._process.stdout is not None
        ready = self._process.stdout.readline().strip()
        if ready != "ready":
            self._process.kill()
            raise RuntimeError(f"netem stand-in did not start in {host}: {ready!r}")
        host.run(["iptables", "-A", *self._rule])
        self.summary: dict[str, Any] = {}

    def stop(self) -> dict[str, Any]:
        """Remove the rule, release every held packet, and return the counts."""
        if self.summary:
            return self.summary
        self.host.run(["iptables", "-D", *self._rule], check=False)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        self.summary = json.loads(self._process.stdout.read())
        self._process.wait(10)
        return self.summary


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit("usage: python -m tests.netem_queue QUEUE LOSS DELAY_MS REORDER [SEED]")
    queue_number, loss_rate, delay_ms, reorder_rate = sys.argv[1:5]
    summary = serve(int(queue_number), float(loss_rate), float(delay_ms) / 1000,
                    float(reorder_rate), int(sys.argv[5]) if len(sys.argv) == 6 else 1)
    print(json.dumps(summary), flush=True)
