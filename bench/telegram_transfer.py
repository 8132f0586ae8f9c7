"""Telegram file transfers through Telethon's real client: our part size and parallelism vs its own.

Telethon's client code runs against the in-process emulator (tests/telegram_emulator), which
replaces only the network sender. Two things the emulator does not have are added around that
sender here, so the figures mean something:

* a modeled link (``--rtt-ms`` 50, ``--mbit`` 100: a good home line to a Telegram data centre):
  each request leaves when the uplink is free, takes size/bandwidth on the wire, and its answer
  arrives half a round trip after the server had it, queued behind earlier answers on the
  downlink. Throughput is then compared with the link's own bandwidth, the ceiling.
* MTProto's client-side work per request: SHA-256 of the payload (the msg_key) and AES-256-IGE
  over it, up for requests and down for answers, with Telethon's own ``AES`` class; so cryptg
  (or OpenSSL through ctypes, or pure-Python pyaes) costs what it costs in a real client.

For upload and download of one file (64 MiB; 4 MiB with ``--quick``) it compares:
``telethon default`` (``send_file``/``download_media`` with no options: 128 KiB parts up to
100 MB, one request at a time), ``512 KiB sequential`` (Chimera's previous setting) and
``chimera`` (:mod:`chimera_tk.net.telegram.transfer`: 512 KiB parts, 8 in flight); it counts the
requests and checks every byte arrived. A sweep of 2-16 parts in flight over a faster link
(``--sweep-mbit`` 400) shows where more parallelism stops paying. Then the client path alone,
with no modeled link, in MiB per CPU second (the emulator's own work included; robust on a
shared machine), with cryptg, with OpenSSL (Telethon's ctypes wrapper) and with pyaes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common import Result, finish, parse_args, say

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from telethon.crypto import aes as telethon_aes  # noqa: E402

from chimera_tk.net.telegram import transfer  # noqa: E402
from tests.telegram_emulator import TelegramServer, connect_client  # noqa: E402

MIB = 1 << 20
SMALL_REQUEST = 256  # bytes on the wire for a request or answer with no file data
_KEY, _IV = os.urandom(32), os.urandom(32)
_AUTH_KEY_PART = os.urandom(32)


class ModeledLink:
    """Wraps an EmulatedSender's ``send``: answers are held back as a link of ``rtt_s`` and
    ``bandwidth`` bytes/s would hold them, and each request pays MTProto's client crypto."""

    def __init__(self, sender: Any, rtt_s: float, bandwidth: float | None) -> None:
        self._send = sender.send
        sender.send = self.send
        self.rtt_s = rtt_s
        self.bandwidth = bandwidth
        self.requests: Counter[str] = Counter()
        self._up_free = 0.0
        self._down_free = 0.0

    def send(self, request: Any, ordered: bool = False) -> Any:
        if isinstance(request, list | tuple):
            return [self.send(r) for r in request]
        inner = self._send(request)
        self.requests[type(request).__name__] += 1
        payload = getattr(request, "bytes", None)
        _mtproto_crypto(payload if isinstance(payload, bytes) else b"\0" * SMALL_REQUEST)
        loop = asyncio.get_running_loop()
        up_bytes = len(payload) + SMALL_REQUEST if isinstance(payload, bytes) else SMALL_REQUEST
        now = loop.time()
        self._up_free = max(now, self._up_free) + self._wire(up_bytes)
        at_server = self._up_free + self.rtt_s / 2
        outer = loop.create_future()

        def answered(done: asyncio.Future) -> None:
            if done.cancelled():
                outer.cancel()
                return
            if done.exception() is not None:
                outer.set_exception(done.exception())
                return
            result = done.result()
            data = getattr(result, "bytes", None)
            if isinstance(data, bytes):
                _mtproto_crypto(data)
            down_bytes = len(data) + SMALL_REQUEST if isinstance(data, bytes) else SMALL_REQUEST
            self._down_free = max(at_server, self._down_free) + self._wire(down_bytes)
            when = self._down_free + self.rtt_s / 2
            loop.call_at(when, lambda: outer.done() or outer.set_result(result))

        inner.add_done_callback(answered)
        return outer

    def _wire(self, size: int) -> float:
        return size / self.bandwidth if self.bandwidth else 0.0

    def total_requests(self, *names: str) -> int:
        return sum(self.requests[name] for name in names)


def _mtproto_crypto(payload: bytes) -> None:
    """What a real client computes for one message: its msg_key and its AES-IGE."""
    hashlib.sha256(_AUTH_KEY_PART + payload)
    padded = payload + b"\0" * (-len(payload) % 16)
    telethon_aes.AES.encrypt_ige(padded, _KEY, _IV)


@contextmanager
def aes_backend(name: str):
    """Make Telethon's AES use ``cryptg``, ``openssl`` (libssl via ctypes) or ``pyaes``."""
    saved = (telethon_aes.cryptg, telethon_aes.libssl.encrypt_ige,
             telethon_aes.libssl.decrypt_ige)
    if name != "cryptg":
        telethon_aes.cryptg = None
    if name == "pyaes":
        telethon_aes.libssl.encrypt_ige = telethon_aes.libssl.decrypt_ige = None
    try:
        yield
    finally:
        (telethon_aes.cryptg, telethon_aes.libssl.encrypt_ige,
         telethon_aes.libssl.decrypt_ige) = saved


UPLOAD_REQUESTS = ("SaveFilePartRequest", "SaveBigFilePartRequest")
DOWNLOAD_REQUESTS = ("GetFileRequest",)


async def _upload_default(client: Any, bob: Any, path: Path) -> Any:
    return await client.send_file(bob, str(path))


async def _upload_sequential_512(client: Any, bob: Any, path: Path) -> Any:
    return await client.send_file(bob, str(path), part_size_kb=512)


async def _upload_chimera(client: Any, bob: Any, path: Path) -> Any:
    return await transfer.send_file(client, bob, path, caption=None)


async def _download_default(client: Any, message: Any, target: Path) -> None:
    await client.download_media(message, file=str(target))


async def _download_sequential_512(client: Any, message: Any, target: Path) -> None:
    await client.download_file(message.document, str(target), part_size_kb=512)


async def _download_chimera(client: Any, message: Any, target: Path) -> None:
    await transfer.download_media(client, message, target)


CONFIGS: dict[str, tuple[Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]]] = {
    "telethon default": (_upload_default, _download_default),
    "512 KiB sequential": (_upload_sequential_512, _download_sequential_512),
    "chimera": (_upload_chimera, _download_chimera),
}
SWEEP = (2, 4, 8, 16)


def _parallel_config(parallel: int) -> tuple[Callable[..., Awaitable[Any]],
                                             Callable[..., Awaitable[Any]]]:
    async def upload(client: Any, bob: Any, path: Path) -> Any:
        uploaded = await transfer.upload(client, path, parallel=parallel)
        return await client.send_file(bob, uploaded)

    async def download(client: Any, message: Any, target: Path) -> None:
        await transfer.download(client, message, target, message.document.size,
                                parallel=parallel)

    return upload, download


for _parallel in SWEEP:
    CONFIGS[f"{_parallel} in flight"] = _parallel_config(_parallel)


class Measured:
    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}
        self.cpu: dict[tuple[str, str], float] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.damaged = 0


async def measure(source: Path, tmp: Path, configs: list[str], rtt_s: float,
                  bandwidth: float | None, out: Measured, label: str = "") -> None:
    """Upload ``source`` to Bob and download Bob's copy of it back, once per config."""
    data = source.read_bytes()
    expected = hashlib.sha256(data).hexdigest()
    size = len(data)
    server = TelegramServer(seed=5)
    alice = server.add_user("Alice", phone="+15550100")
    bob = server.add_user("Bob", phone="+15550200")
    document = server.upload_document(data, source.name)
    client = await connect_client(server, signed_in_as=alice)
    try:
        link = ModeledLink(client._sender, rtt_s, bandwidth)
        server.send_as(bob, alice, "the file", media=document)
        await client.get_dialogs()
        bob_entity = await client.get_input_entity(bob.id)
        [message] = await client.get_messages(bob_entity, limit=1)
        for name in configs:
            upload, download = CONFIGS[name]
            key = (label + name, "upload")
            before = link.total_requests(*UPLOAD_REQUESTS)
            cpu, start = time.process_time(), time.perf_counter()
            await upload(client, bob_entity, source)
            out.seconds[key] = time.perf_counter() - start
            out.cpu[key] = time.process_time() - cpu
            out.requests[key] = link.total_requests(*UPLOAD_REQUESTS) - before
            stored = server.messages_of(bob, alice)[-1].media
            if stored is None or hashlib.sha256(stored.data).hexdigest() != expected:
                out.damaged += 1
                say(f"  !! {name}: the upload arrived damaged")
            target = tmp / f"down-{len(out.seconds)}.bin"
            key = (label + name, "download")
            before = link.total_requests(*DOWNLOAD_REQUESTS)
            cpu, start = time.process_time(), time.perf_counter()
            await download(client, message, target)
            out.seconds[key] = time.perf_counter() - start
            out.cpu[key] = time.process_time() - cpu
            out.requests[key] = link.total_requests(*DOWNLOAD_REQUESTS) - before
            if hashlib.sha256(target.read_bytes()).hexdigest() != expected:
                out.damaged += 1
                say(f"  !! {name}: the download arrived damaged")
            target.unlink()
            for direction in ("upload", "download"):
                k = (label + name, direction)
                say(f"  {label + name:<28} {direction:<8}: {size / MIB / out.seconds[k]:7.1f} "
                    f"MiB/s, {out.requests[k]:4d} requests, CPU {out.cpu[k]:.2f} s")
    finally:
        await client.disconnect()


def make_source(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        for offset in range(0, size, MIB):
            out.write(os.urandom(min(MIB, size - offset)))


def run(args: Any) -> list[Result]:
    size = (args.size_mib or (4 if args.quick else 64)) * MIB
    cpu_size = (args.size_mib or (8 if args.quick else 128)) * MIB
    openssl_size = (2 if args.quick else 16) * MIB
    pyaes_size = (1 if args.quick else 4) * MIB
    rtt_s = args.rtt_ms / 1000
    bandwidth = args.mbit * 1e6 / 8
    ceiling = bandwidth / MIB
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="chimera-bench-tg-") as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "payload.bin"  # not an image: Telethon sends it as a document
        make_source(source, size)
        say(f"telegram: {size // MIB} MiB up and down over a modeled link of {args.rtt_ms:g} ms "
            f"RTT and {args.mbit:g} Mbit/s ({ceiling:.1f} MiB/s), cryptg on")
        linked = Measured()
        asyncio.run(measure(source, tmp, list(CONFIGS), rtt_s, bandwidth, linked))

        say(f"client path alone (no modeled link): {cpu_size // MIB} MiB, chimera's settings")
        cpu_source = tmp / "cpu.bin"
        make_source(cpu_source, cpu_size)
        sweep_size = (args.size_mib or (4 if args.quick else 32)) * MIB
        say(f"parts in flight, 512 KiB parts: {sweep_size // MIB} MiB over {args.rtt_ms:g} ms "
            f"and {args.sweep_mbit:g} Mbit/s")
        sweep_source = tmp / "sweep.bin"
        make_source(sweep_source, sweep_size)
        swept = Measured()
        asyncio.run(measure(sweep_source, tmp, [f"{p} in flight" for p in SWEEP], rtt_s,
                            args.sweep_mbit * 1e6 / 8, swept))
        sizes = {"cryptg": cpu_size, "openssl": openssl_size, "pyaes": pyaes_size}
        alone = Measured()
        for backend, backend_size in sizes.items():
            backend_source = tmp / f"{backend}.bin"
            make_source(backend_source, backend_size)
            with aes_backend(backend):
                asyncio.run(measure(backend_source, tmp, ["chimera"], 0.0, None, alone,
                                    label=f"{backend}: "))

    def rate(measured: Measured, name: str, direction: str, nbytes: int) -> float:
        return nbytes / MIB / measured.seconds[(name, direction)]

    for direction in ("upload", "download"):
        ours = rate(linked, "chimera", direction, size)
        default = rate(linked, "telethon default", direction, size)
        previous = rate(linked, "512 KiB sequential", direction, size)
        note = f"{size // MIB} MiB; 512 KiB parts, {transfer.PARALLEL} in flight"
        results += [
            Result(f"telegram {direction} chimera vs telethon default", ours, "MiB/s",
                   better="higher", note=note, ratio_target=2.0,
                   peer="Telethon's defaults: 128 KiB parts (<=100 MB), one at a time",
                   peer_figure=default),
            Result(f"telegram {direction} chimera vs link", ours, "MiB/s", better="higher",
                   note=note, ratio_target=0.8,
                   peer=f"the modeled link ({args.rtt_ms:g} ms, {args.mbit:g} Mbit/s): ceiling",
                   peer_figure=ceiling),
            Result(f"telegram {direction} chimera vs 512 KiB sequential", ours, "MiB/s",
                   better="higher", note=note,
                   peer="512 KiB parts, one at a time (Chimera's previous upload setting; "
                        "send_file ignored it)", peer_figure=previous),
            Result(f"telegram {direction} requests, chimera vs telethon default",
                   linked.requests[("chimera", direction)], "requests", better="lower",
                   peer="Telethon's defaults",
                   peer_figure=linked.requests[("telethon default", direction)]),
        ]
    sweep_ceiling = args.sweep_mbit * 1e6 / 8 / MIB
    for parallel in SWEEP:
        for direction in ("upload", "download"):
            results.append(Result(
                f"telegram {direction} {parallel} in flight vs link",
                rate(swept, f"{parallel} in flight", direction, sweep_size), "MiB/s",
                better="higher", note=f"{sweep_size // MIB} MiB, 512 KiB parts",
                peer=f"the modeled link ({args.rtt_ms:g} ms, {args.sweep_mbit:g} Mbit/s): "
                     "ceiling", peer_figure=sweep_ceiling))

    def per_cpu(measured: Measured, name: str, direction: str, nbytes: int) -> float:
        # MiB per CPU second: the client path's own cost, whatever else the machine is doing
        return nbytes / MIB / measured.cpu[(name, direction)]

    for direction in ("upload", "download"):
        cryptg_rate = per_cpu(alone, "cryptg: chimera", direction, cpu_size)
        openssl_rate = per_cpu(alone, "openssl: chimera", direction, openssl_size)
        pyaes_rate = per_cpu(alone, "pyaes: chimera", direction, pyaes_size)
        note = (f"{cpu_size // MIB} MiB, no modeled link (emulator's work included); wall "
                f"{rate(alone, 'cryptg: chimera', direction, cpu_size):.1f} MiB/s")
        results += [
            Result(f"telegram {direction} client path, cryptg vs OpenSSL via ctypes",
                   cryptg_rate, "MiB/CPU-s", better="higher", note=note,
                   peer=f"Telethon's fallback without cryptg ({openssl_size // MIB} MiB)",
                   peer_figure=openssl_rate),
            Result(f"telegram {direction} client path, cryptg vs pyaes", cryptg_rate,
                   "MiB/CPU-s", better="higher", note=note,
                   peer=f"pure-Python AES, Telethon's last resort ({pyaes_size // MIB} MiB)",
                   peer_figure=pyaes_rate),
        ]
    results.append(Result("telegram transfers that arrived damaged",
                          linked.damaged + alone.damaged, "files", 0, "equal"))
    return results


def main(argv: list[str] | None = None) -> int:
    def extra(parser: Any) -> None:
        parser.add_argument("--size-mib", type=int, help="file size (default 64; quick 4)")
        parser.add_argument("--rtt-ms", type=float, default=50.0,
                            help="the modeled link's round trip (default 50 ms)")
        parser.add_argument("--mbit", type=float, default=100.0,
                            help="the modeled link's bandwidth each way (default 100 Mbit/s)")
        parser.add_argument("--sweep-mbit", type=float, default=400.0,
                            help="the faster link for the parts-in-flight sweep (default 400)")

    args = parse_args(__doc__.splitlines()[0], argv, extra)
    return finish("telegram transfer", run(args), args.results)


if __name__ == "__main__":
    sys.exit(main())
