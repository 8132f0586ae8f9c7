"""Parallel Telegram transfers (chimera_tk/net/telegram/transfer.py) through Telethon's real client.

The in-process emulator stands in for Telegram's servers (unreachable here); Telethon and our
transfer code are the real ones. The emulator answers requests in the order they were sent, so
"several in flight" is checked by counting requests queued before the first answer came back.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from chimera_tk.net.telegram import transfer
from tests.telegram_emulator import TelegramServer, connect_client

MIB = 1 << 20


class _InFlight:
    """Counts how many requests the client had queued at most before an answer arrived."""

    def __init__(self, sender: object) -> None:
        self._send = sender.send  # type: ignore[attr-defined]
        sender.send = self.send  # type: ignore[attr-defined]
        self.pending = 0
        self.most = 0
        self.names: list[str] = []

    def send(self, request: object, ordered: bool = False) -> object:
        future = self._send(request, ordered)
        self.names.append(type(request).__name__)
        self.pending += 1
        self.most = max(self.most, self.pending)

        def done(_future: object) -> None:
            self.pending -= 1

        future.add_done_callback(done)
        return future


async def _bobs_file(client, bob_entity):
    messages = await client.get_messages(bob_entity, limit=10)
    return next(m for m in messages if not m.out and m.document is not None)


def _run(scenario, timeout: float = 60):
    asyncio.run(asyncio.wait_for(scenario(), timeout))


@pytest.mark.parametrize("size", [3 * MIB + 1234, 12 * MIB + 5])  # SaveFilePart / SaveBigFilePart
def test_parallel_upload_and_download_are_byte_identical_with_parts_in_flight(
        tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    source = tmp_path / "report.tar"
    source.write_bytes(data)
    server = TelegramServer(seed=9)
    alice = server.add_user("Alice", phone="+15550100")
    bob = server.add_user("Bob", phone="+15550200")
    server.send_as(bob, alice, "here", media=server.upload_document(data[::-1], "back.tar"))

    async def scenario() -> None:
        client = await connect_client(server, signed_in_as=alice)
        try:
            counter = _InFlight(client._sender)
            await client.get_dialogs()
            bob_entity = await client.get_input_entity(bob.id)
            seen: list[tuple[int, int]] = []
            sent = await transfer.send_file(client, bob_entity, source, caption="the report",
                                            progress=lambda done, total: seen.append((done,
                                                                                      total)))
            stored = server.messages_of(bob, alice)[-1]
            assert stored.text == "the report" and stored.media is not None
            assert stored.media.data == data and stored.media.name == "report.tar"
            assert sent.id == stored.id
            assert seen[-1] == (size, size)
            part_requests = [n for n in counter.names if "FilePart" in n]
            assert len(part_requests) == -(-size // transfer.PART_SIZE)
            assert counter.most >= transfer.PARALLEL // 2  # one at a time would be 1

            message = await _bobs_file(client, bob_entity)
            target = tmp_path / "down.bin"
            counter.most = 0
            await transfer.download_media(client, message, target)
            assert target.read_bytes() == data[::-1]
            assert counter.most >= transfer.PARALLEL // 2  # one at a time would be 1
        finally:
            await client.disconnect()

    _run(scenario)


def test_small_files_and_photos_go_through_telethon_itself(tmp_path: Path) -> None:
    small = tmp_path / "note.txt"
    small.write_bytes(b"short")
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8" + os.urandom(transfer.PART_SIZE * 2))
    assert not transfer.wants_parallel_upload(small, 5)
    assert not transfer.wants_parallel_upload(photo, photo.stat().st_size)
    assert transfer.wants_parallel_upload(tmp_path / "big.bin", transfer.PART_SIZE + 1)
    server = TelegramServer(seed=10)
    alice = server.add_user("Alice", phone="+15550100")
    bob = server.add_user("Bob", phone="+15550200")
    server.send_as(bob, alice, "tiny", media=server.upload_document(b"tiny file", "t.bin"))

    async def scenario() -> None:
        client = await connect_client(server, signed_in_as=alice)
        try:
            await client.get_dialogs()
            bob_entity = await client.get_input_entity(bob.id)
            await transfer.send_file(client, bob_entity, small, caption=None)
            assert server.messages_of(bob, alice)[-1].media.data == b"short"
            message = await _bobs_file(client, bob_entity)
            target = tmp_path / "t.bin"
            await transfer.download_media(client, message, target)
            assert target.read_bytes() == b"tiny file"
        finally:
            await client.disconnect()

    _run(scenario)


def test_a_failing_part_fails_the_download_with_telegrams_error_and_stops_the_others(
        tmp_path: Path) -> None:
    from telethon import errors, functions

    server = TelegramServer(seed=11)
    alice = server.add_user("Alice", phone="+15550100")
    bob = server.add_user("Bob", phone="+15550200")
    server.send_as(bob, alice, "big", media=server.upload_document(os.urandom(6 * MIB), "b.bin"))

    async def scenario() -> None:
        client = await connect_client(server, signed_in_as=alice)
        try:
            await client.get_dialogs()
            message = await _bobs_file(client, await client.get_input_entity(bob.id))
            server.fail(functions.upload.GetFileRequest, 400, "FILE_ID_INVALID")
            with pytest.raises(errors.FileIdInvalidError):
                await transfer.download_media(client, message, tmp_path / "b.bin")
            stripes = [t for t in asyncio.all_tasks() if "stripe" in repr(t.get_coro())]
            assert stripes == []  # the other stripes were cancelled, not left writing
        finally:
            await client.disconnect()

    _run(scenario)
