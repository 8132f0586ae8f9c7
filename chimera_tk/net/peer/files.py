"""Received files on disk: safe names chosen by the receiver, partial files, resume, free space.

No path from a peer is ever trusted. The offered name is reduced to a plain base name; the bytes
go to ``downloads/.partial/<hash of uid>.part`` and are moved under the final name only after the
SHA-256 matched, so a final name never holds a partial file. A partial file survives a crash and
the transfer resumes from its length.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import shutil
import threading
import unicodedata
from pathlib import Path

from chimera_tk.errors import ChimeraError

PARTIAL_DIR = ".partial"
MAX_NAME_BYTES = 200
DISK_RESERVE_BYTES = 64 * 1024 * 1024  # never fill the disk to the last byte
WRITEBACK_WINDOW = 8 * 1024 * 1024  # the writer starts writeback this often (see _write_back)
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")
_FORBIDDEN = re.compile(r'[<>:"/\\|?*]')


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


def claim_unique_path(folder: Path, name: str) -> Path:
    """Create an empty file under ``name`` or ``name (n)``; the caller then replaces it."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    for attempt in range(10_000):
        candidate = name if attempt == 0 else (
            f"{stem} ({attempt}).{ext}" if ext else f"{stem} ({attempt})")
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
    """One file being received: bytes are written and hashed on a thread of their own.

    Writing and hashing release the GIL, so they run beside the TLS decryption of the next chunk.
    Every WRITEBACK_WINDOW bytes the writer starts the disk writes behind it (:func:`_write_back`).
    """

    def __init__(self, downloads: Path, uid: str, size: int, sha256: str) -> None:
        self.downloads = downloads
        self.uid = uid
        self.size = size
        self.expected_sha256 = sha256
        self.partial = partial_path(downloads, uid)
        self.partial.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._hasher = hashlib.sha256()
        self.offset = self._resume_offset()
        self._file = open(self.partial, "ab")  # noqa: SIM115 - closed in finish/abort
        os.chmod(self.partial, 0o600)
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name=f"file-{uid[:8]}",
                                        daemon=True)
        self._writer.start()

    def _resume_offset(self) -> int:
        try:
            existing = self.partial.stat().st_size
        except FileNotFoundError:
            return 0
        if existing > self.size:
            self.partial.unlink()
            return 0
        with open(self.partial, "rb") as partial:
            while chunk := partial.read(1 << 20):
                self._hasher.update(chunk)
        return existing

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise TransferError(_describe(self._error))
        self._chunks.put(chunk)
        self.offset += len(chunk)

    def _write_loop(self) -> None:
        previous = current = self._file.tell()  # where the last two writeback windows begin
        while (chunk := self._chunks.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._file.write(chunk)
                self._hasher.update(chunk)
                if self._file.tell() - current >= WRITEBACK_WINDOW:
                    self._file.flush()
                    end = self._file.tell()
                    # the window before: advised a second time, now written, dropped;
                    # the new one: its writeback starts
                    _write_back(self._file.fileno(), previous, end)
                    previous, current = current, end
            except OSError as exc:
                self._error = exc

    def finish(self) -> Path:
        """Verify the checksum and move the file under a fresh final name; returns that path."""
        self._chunks.put(None)
        self._writer.join()
        try:
            if self._error is not None:
                raise TransferError(_describe(self._error))
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        if self._hasher.hexdigest() != self.expected_sha256:
            self.partial.unlink(missing_ok=True)
            raise TransferError("the file arrived damaged (SHA-256 mismatch); it was discarded")
        return self.partial  # the caller moves it under its final name

    def abort(self, *, keep_partial: bool) -> None:
        """Stop writing; keep the partial file for a resume, or delete it to free the space."""
        self._chunks.put(None)
        self._writer.join(timeout=30)
        with contextlib.suppress(OSError):
            self._file.close()
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


def move_into_place(partial: Path, downloads: Path, name: str) -> Path:
    final = claim_unique_path(downloads, safe_file_name(name))
    os.replace(partial, final)
    return final


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == 28:
        return "the disk is full"
    return str(error)
