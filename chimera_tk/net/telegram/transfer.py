"""Telegram file transfers with several parts in flight (runs in the Telegram worker's loop).

Telethon 1.x uploads and downloads one part at a time, so a transfer costs one round trip per part
(128 KiB parts for files up to 100 MB; ``send_file`` ignores a ``part_size_kb``): on a 50 ms link
that is ~2 MiB/s whatever the line's speed. Here parts are 512 KiB (the most Telethon lets one
request carry) and ``PARALLEL`` of them are in flight on the same connection, which Telegram
allows for both directions (https://core.telegram.org/api/files). bench/telegram_transfer.py
measures the difference.

Images still go through Telethon's own upload (it resizes large photos first); files Telethon
would send as one part go through it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

PART_SIZE = 512 * 1024  # Telethon's MAX_CHUNK_SIZE; Telegram's limit for both directions
PARALLEL = 8  # parts in flight: enough to fill a link whose round trip is 8 parts long
BIG_FILE = 10 * 1024 * 1024  # Telegram's threshold for SaveBigFilePart (no MD5)

Progress = Callable[[int, int], Any]


def wants_parallel_upload(path: Path, size: int) -> bool:
    """Whether :func:`upload` handles this file (more than one part, not a photo)."""
    from telethon import utils

    return size > PART_SIZE and not utils.is_image(str(path))


async def upload(client: Any, path: Path, *, part_size: int = PART_SIZE,
                 parallel: int = PARALLEL, progress: Progress | None = None) -> Any:
    """Upload ``path`` in parts, ``parallel`` at a time; returns the InputFile(Big) to send."""
    from telethon.tl import functions, types

    size = path.stat().st_size
    parts = max(1, -(-size // part_size))
    big = size > BIG_FILE
    file_id = random.getrandbits(63)
    md5 = hashlib.md5(usedforsecurity=False) if not big else None
    next_part = 0
    done = 0
    with open(path, "rb") as source:

        async def send_parts() -> None:
            nonlocal next_part, done
            while next_part < parts:
                index = next_part
                next_part += 1
                data = os.pread(source.fileno(), part_size, index * part_size)
                if len(data) != min(part_size, size - index * part_size):
                    raise OSError(f"{path.name} changed while it was being uploaded")
                if md5 is not None:  # parts are read in order, so the hash sees them in order
                    md5.update(data)
                request = (functions.upload.SaveBigFilePartRequest(file_id, index, parts, data)
                           if big else functions.upload.SaveFilePartRequest(file_id, index, data))
                if not await client(request):
                    raise ConnectionError(f"Telegram did not take part {index} of {path.name}")
                done += len(data)
                if progress is not None:
                    progress(done, size)

        await _all_or_none([send_parts() for _ in range(min(parallel, parts))])
    if big:
        return types.InputFileBig(file_id, parts, path.name)
    assert md5 is not None
    return types.InputFile(file_id, parts, path.name, md5.hexdigest())


async def _all_or_none(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines together; on the first failure cancel the others (they share a file
    that is about to be closed) and raise that failure as it is (not as an ExceptionGroup, so
    the worker's ``except OSError`` / ``RPCError`` still apply)."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:  # we were cancelled ourselves
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    errors = [task.exception() for task in done if not task.cancelled() and task.exception()]
    if errors:
        raise errors[0]


def document_size(message: Any) -> int | None:
    """The size of the message's document, or None when it has none (a photo, say)."""
    document = getattr(message, "document", None)
    size = getattr(document, "size", None)
    return size if isinstance(size, int) else None


async def download(client: Any, message: Any, target: Path, size: int, *,
                   part_size: int = PART_SIZE, parallel: int = PARALLEL,
                   progress: Progress | None = None) -> None:
    """Download the message's document into ``target``: ``parallel`` stripes, each asking for
    every ``parallel``-th part (Telethon's ``iter_download`` with a stride, which also borrows a
    connection to the file's data centre when it lives elsewhere)."""
    stride = part_size * parallel
    done = 0
    with open(target, "wb") as out:
        out.truncate(size)
        fd = out.fileno()

        async def stripe(first: int) -> None:
            nonlocal done
            offset = first * part_size
            chunks = -(-(size - offset) // stride)
            async for chunk in client.iter_download(
                    message.media, offset=offset, stride=stride, request_size=part_size,
                    limit=chunks, file_size=size):
                os.pwrite(fd, chunk, offset)
                offset += stride
                done += len(chunk)
                if progress is not None:
                    progress(done, size)

        await _all_or_none([stripe(i) for i in range(min(parallel, -(-size // part_size)))])
    if done != size:
        raise ConnectionError(f"{target.name}: {done} of {size} bytes arrived")


async def send_file(client: Any, entity: Any, path: Path, *, caption: str | None,
                    progress: Progress | None = None) -> Any:
    """``client.send_file`` with the parts uploaded in parallel where :func:`upload` applies."""
    from telethon import utils

    size = path.stat().st_size
    if not wants_parallel_upload(path, size):
        return await client.send_file(entity, str(path), caption=caption,
                                      progress_callback=progress)
    uploaded = await upload(client, path, progress=progress)
    # what Telethon would derive from the path itself (name, MIME type, video/audio metadata)
    attributes, mime_type = utils.get_attributes(str(path))
    return await client.send_file(entity, uploaded, caption=caption, attributes=attributes,
                                  mime_type=mime_type)


async def download_media(client: Any, message: Any, target: Path, *,
                         progress: Progress | None = None) -> None:
    """``client.download_media`` into ``target``, documents in parallel stripes."""
    size = document_size(message)
    if size is None or size <= PART_SIZE:
        await client.download_media(message, file=str(target), progress_callback=progress)
        return
    await download(client, message, target, size, progress=progress)
