"""Received files on disk: safe names chosen by the receiver, partial files, resume, free space.

No path from a peer is ever trusted. The offered name is reduced to a plain base name; the bytes
go to ``downloads/.partial/<hash of uid>.part`` and are moved under the final name only after the
SHA-256 matched, so a final name never holds a partial file. A partial file survives a crash and
the transfer resumes from its length.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import re
import shutil
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from chimera_tk.errors import ChimeraError
from chimera_tk.net.peer.direct_io import DirectWriter
from chimera_tk.net.peer.protocol import PAYLOADS

PARTIAL_DIR = ".partial"
MAX_NAME_BYTES = 200
DISK_RESERVE_BYTES = 64 * 1024 * 1024  # never fill the disk to the last byte
WRITEBACK_WINDOW = 8 * 1024 * 1024  # the disk thread starts writeback this often (_write_back)
DISK_QUEUE = 4  # chunks hashed and not yet written, at most, besides the one being hashed
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")
_FORBIDDEN = re.compile(r'[<>:"/\\|?*]')
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK,
                  errno.ENOSYS}


class TransferError(ChimeraError):
    """A file transfer cannot go on (disk full, checksum mismatch); the reason is for the user."""


def safe_file_name(offered: str) -> str:
    """A base name safe on every platform, derived from what the peer offered."""
    name = offered.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in unicodedata.normalize("NFC", name)
                   if unicodedata.category(ch)[0] != "C")
    name = _FORBIDDEN.sub("_", name).strip().strip(".").strip()
    if not name:
        name = "file"
    if _WINDOWS_RESERVED.fullmatch(name):
        name = "_" + name
    return _truncate(name, MAX_NAME_BYTES)


def _truncate(name: str, max_bytes: int) -> str:
    if len(name.encode()) <= max_bytes:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode()) > 16 or not stem:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = max_bytes - len(suffix.encode())
    encoded = stem.encode()[:budget]
    return encoded.decode("utf-8", "ignore") + suffix


def _candidate_names(name: str) -> Iterator[str]:
    """``name``, then ``name (1)``, ``name (2)``... with the number before the extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    yield name
    for attempt in range(1, 10_000):
        yield f"{stem} ({attempt}).{ext}" if ext else f"{stem} ({attempt})"


def claim_unique_path(folder: Path, name: str) -> Path:
    """Create an empty file under ``name`` or ``name (n)``; the caller then replaces it."""
    for candidate in _candidate_names(name):
        path = folder / candidate
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue
        return path
    raise TransferError(f"no free name for {name!r} in {folder}")


def partial_path(downloads: Path, uid: str) -> Path:
    digest = hashlib.sha256(uid.encode()).hexdigest()[:40]
    return downloads / PARTIAL_DIR / f"{digest}.part"


def free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


class IncomingFile:
    """One file being received: bytes are hashed on a thread of their own and written on another.

    Writing and hashing release the GIL, so they run beside the TLS decryption of the next chunk
    and beside each other. The disk thread writes the chunks in order, up to DISK_QUEUE of them
    behind the hash, so neither thread waits for the other's wake-up per chunk (when the writer
    waited for each chunk's write, the peer thread found the writer's queue full on every other
    chunk: 0.3-0.5 s per GiB). Full-size chunks go to the disk directly (:mod:`direct_io`); for
    the rest, every WRITEBACK_WINDOW bytes the disk thread starts the writes behind it
    (:func:`_write_back`). The writer thread owns the file's descriptors: it syncs and closes
    them when it ends, so a disk that stalls past ``abort``'s wait cannot leave a write going to
    a closed (and perhaps reused) descriptor.
    """

    ABORT_WAIT_S = 30.0  # how long abort waits for the writer (a stalled disk) at most

    def __init__(self, downloads: Path, uid: str, size: int, sha256: str) -> None:
        self.downloads = downloads
        self.uid = uid
        self.size = size
        self.expected_sha256 = sha256
        self.partial = partial_path(downloads, uid)
        self.partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hasher = hashlib.sha256()
        self.offset = self._resume_offset()
        self._fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.chmod(self.partial, 0o600)
        self._direct = DirectWriter(self.partial)
        self._disk_failed = False  # set on the disk thread: it writes nothing after a failure
        self._stopping = False  # set by abort: no sync at the end
        self._discarding = False  # set by abort when the partial file goes: no more writes
        self._cache_windows = (self.offset, self.offset)  # see _write_through_cache
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        # where the first chunk goes, read here: write() may have moved self.offset on before
        # the thread runs
        self._writer = threading.Thread(target=self._write_loop, args=(self.offset,),
                                        name=f"file-{uid[:8]}", daemon=True)
        self._writer.start()

    def _resume_offset(self) -> int:
        try:
            existing = self.partial.stat().st_size
        except FileNotFoundError:
            return 0
        if existing > self.size:
            self.partial.unlink()
            return 0
        with open(self.partial, "rb") as partial:  # exactly the bytes the offset counts
            left = existing
            while left and (chunk := partial.read(min(left, 1 << 20))):
                self._hasher.update(chunk)
                left -= len(chunk)
        return existing

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise TransferError(_describe(self._error))
        self._chunks.put(chunk)
        self.offset += len(chunk)

    def _write_loop(self, end: int) -> None:
        written: deque[tuple[Future[None], bytes]] = deque()  # handed to the disk thread, in order
        try:
            with ThreadPoolExecutor(1, thread_name_prefix=f"disk-{self.uid[:8]}") as disk:
                while (chunk := self._chunks.get()) is not None:
                    if self._error is not None or self._discarding:
                        continue
                    written.append((disk.submit(self._write_chunk, chunk, end), chunk))
                    end += len(chunk)
                    self._hasher.update(chunk)
                    while written and (len(written) > DISK_QUEUE or written[0][0].done()):
                        self._settle(*written.popleft())
                while written:
                    self._settle(*written.popleft())
            if self._error is None and not self._stopping:
                os.fsync(self._fd)
        except OSError as exc:
            self._error = exc
        finally:
            self._direct.close()
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _settle(self, pending: Future[None], chunk: bytes) -> None:
        try:
            pending.result()
        except OSError as exc:
            if self._error is None:
                self._error = exc
            return
        PAYLOADS.give(chunk)

    def _write_chunk(self, chunk: bytes, offset: int) -> None:
        """On the disk thread, in order: all of ``chunk`` at ``offset``. Nothing more after a
        failure, so the partial file stays a prefix of the offer and a resume starts at its
        length."""
        if self._disk_failed or self._discarding:
            return
        try:
            direct = self._direct.write(chunk, offset)
            if direct < len(chunk):
                self._write_through_cache(memoryview(chunk)[direct:], offset + direct)
        except OSError:
            self._disk_failed = True
            raise

    def _write_through_cache(self, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(self._fd, data, offset)
            if not written:  # a file system that takes nothing would keep this loop going
                raise OSError(errno.EIO, "the file system took none of the bytes")
            data, offset = data[written:], offset + written
        previous, current = self._cache_windows
        if offset - current >= WRITEBACK_WINDOW:
            # the window before: advised a second time, now written, dropped;
            # the new one: its writeback starts
            _write_back(self._fd, previous, offset)
            self._cache_windows = (current, offset)

    def finish(self) -> Path:
        """Verify the checksum and move the file under a fresh final name; returns that path."""
        self._chunks.put(None)
        self._writer.join()  # every byte written and synced, or an error
        PAYLOADS.clear()
        if self._error is not None:
            raise TransferError(_describe(self._error))
        if self._hasher.hexdigest() != self.expected_sha256:
            self.partial.unlink(missing_ok=True)
            raise TransferError("the file arrived damaged (SHA-256 mismatch); it was discarded")
        return self.partial  # the caller moves it under its final name

    def abort(self, *, keep_partial: bool) -> None:
        """Stop writing; keep the partial file for a resume (what was received is still written
        first), or delete it to free the space (the rest is not written at all). Waits
        ABORT_WAIT_S at most for a stalled disk; the writer then closes the file itself when its
        write returns."""
        self._stopping = True
        self._discarding = not keep_partial
        deadline = time.monotonic() + self.ABORT_WAIT_S
        with contextlib.suppress(queue.Full):
            self._chunks.put(None, timeout=self.ABORT_WAIT_S)
        self._writer.join(timeout=max(0.0, deadline - time.monotonic()))
        PAYLOADS.clear()
        if not keep_partial:
            self.partial.unlink(missing_ok=True)


def _write_back(fd: int, start: int, end: int) -> None:
    """Start writing ``start..end`` to disk now and drop the pages of it already written.

    Linux starts asynchronous writeback of a DONTNEED range's dirty pages and frees its clean
    ones. The fsync before the ACK then has only the last window or two left (it wrote the whole
    file, 0.3-2.5 s per GiB on the test VM), and a big download neither evicts the page cache
    nor pays for growing it. Elsewhere (no posix_fadvise) this does nothing.
    """
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):  # only advice: a file system may not take it
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)


def move_into_place(partial: Path, downloads: Path, name: str, *,
                    before: Callable[[Path], None] | None = None) -> Path:
    """Give a verified partial file a free final name (``name`` made safe, `` (n)`` if taken).

    A hard link makes the name appear with every byte at once, so a crash at any moment leaves
    either no final name or the whole file under it, never an empty or short one. ``before`` is
    called with the name about to be taken (the receiver records it, so that after a crash
    between this rename and its commit it finds the finished file instead of storing it twice).
    A file system without hard links gets the name claimed empty and replaced instead.
    """
    for candidate in _candidate_names(safe_file_name(name)):
        final = downloads / candidate
        if final.exists() or final.is_symlink():
            continue
        if before is not None:
            before(final)
        try:
            os.link(partial, final)
        except FileExistsError:
            continue  # taken since the check
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            break
        os.unlink(partial)
        return final
    else:
        raise TransferError(f"no free name for {name!r} in {downloads}")
    final = claim_unique_path(downloads, safe_file_name(name))
    if before is not None:
        before(final)
    os.replace(partial, final)
    return final


def finished_copy(downloads: Path, uid: str, recorded: Path, size: int, sha256: str) -> bool:
    """Whether ``recorded`` (the final name chosen for ``uid`` before a crash) holds the whole
    file; if so, the partial file it came from, when still there, is removed."""
    try:
        if recorded.parent.resolve() != downloads.resolve() or not recorded.is_file() \
                or recorded.is_symlink() or recorded.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with open(recorded, "rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return False
    if digest.hexdigest() != sha256:
        return False
    partial_path(downloads, uid).unlink(missing_ok=True)
    return True


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(error, OSError) and error.errno == errno.EDQUOT:
        return "the disk quota is used up"
    return str(error)
