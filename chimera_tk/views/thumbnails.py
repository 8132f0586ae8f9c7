"""Image thumbnails for file messages: made off the Tk thread, cached on disk and in memory.

:func:`make_thumbnail` turns a picture into a small PNG (EXIF orientation applied, the first frame
of an animation, decompression bombs refused before anything is decoded). :class:`ThumbnailCache`
runs it on one or two worker threads, newest request first (what the reader just scrolled to),
keeps the PNGs in the profile (``cache/thumbs/<key>.png``, 0600) and the most recent ones in a
bounded memory LRU, and posts :class:`~chimera_tk.events.ThumbnailReady` when one is done. Only the
Tk thread calls :meth:`ThumbnailCache.request`; making a ``PhotoImage`` is the view's business.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from chimera_tk.errors import ChimeraError
from chimera_tk.events import EventDispatcher, ThumbnailReady
from chimera_tk.fsutil import atomic_write_bytes, ensure_private_dir
from chimera_tk.store.records import FileRecord

log = logging.getLogger(__name__)

THUMBNAIL_BOX = (320, 240)
# A picture of more pixels than this is not decoded at all: 50 MP is about 200 MB once decoded,
# and a tiny file can declare a billion pixels (a decompression bomb). Pillow's own check reads
# this limit too (it warns above it and refuses above twice it); ours refuses at the limit.
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 200 * 1024 * 1024
MEMORY_ITEMS = 256
MEMORY_BYTES = 24 * 1024 * 1024
WORKER_THREADS = 2
DISK_FILES = 2000  # thumbnails kept in the profile; the least recently used go first
PRUNE_EVERY = 50  # look at the folder after this many new thumbnails
# Only decoders that are plain Pillow code: a peer picks the bytes, and some formats (EPS, PDF-ish
# ones) would hand them to external programs such as Ghostscript.
SAFE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "ICO")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # the only hashes that may name a cache file
_PREVIEWABLE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff",
                         ".ico", ".jfif", ".pjpeg", ".pjp"}


class ThumbnailError(ChimeraError):
    """The picture cannot be previewed; the message says why in words for a person."""


def is_previewable(file: FileRecord) -> bool:
    """Whether a file message gets an inline preview: a picture that is complete on disk."""
    if file.state != "complete" or not file.path:
        return False
    if file.mime and file.mime.startswith("image/"):
        return True
    return Path(file.name).suffix.lower() in _PREVIEWABLE_SUFFIXES


def make_thumbnail(path: Path, box: tuple[int, int] = THUMBNAIL_BOX) -> bytes:
    """A PNG no larger than ``box``; raises ThumbnailError for anything that cannot be shown."""
    # Pillow is imported here, on a worker thread, not when the window is built
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ThumbnailError(f"the file is too large to preview ({size // 2**20} MB)")
        with Image.open(path, formats=SAFE_FORMATS) as image:
            pixels = image.width * image.height
            if pixels > MAX_PIXELS:
                raise ThumbnailError(
                    f"the picture is too large to preview ({image.width}×{image.height})")
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # an animation shows its first frame
            image.draft("RGB", box)  # JPEG decodes at a reduced scale: far less work and memory
            frame = ImageOps.exif_transpose(image)
            frame = frame.convert("RGBA" if _has_alpha(frame) else "RGB")
            frame.thumbnail(box, Image.Resampling.LANCZOS)
            out = io.BytesIO()
            frame.save(out, format="PNG", optimize=False)
            return out.getvalue()
    except ThumbnailError:
        raise
    except Image.DecompressionBombError:
        raise ThumbnailError("the picture is too large to preview") from None
    except UnidentifiedImageError:
        raise ThumbnailError("not a picture format Chimera can show") from None
    except FileNotFoundError:
        raise ThumbnailError("the file is no longer there") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # Pillow reports truncated and damaged files as OSError, some plugins as the others
        raise ThumbnailError(f"the picture is damaged ({_short(exc)})") from None


def _has_alpha(image: object) -> bool:
    mode = image.mode  # type: ignore[attr-defined]
    return mode in ("RGBA", "LA", "PA") or (
        mode == "P" and "transparency" in image.info)  # type: ignore[attr-defined]


def memory_key(file: FileRecord) -> str:
    """Names a picture without touching the disk: its content hash, else where it lies."""
    return file.sha256 or f"{file.path}\0{file.size}"


class ThumbnailCache:
    """A Worker (start/stop/join). ``request`` on the Tk thread; thumbnails come back as events."""

    name = "thumbnails"

    def __init__(self, folder: Path, post: Callable[[object], None],
                 dispatcher: EventDispatcher, *, threads: int = WORKER_THREADS,
                 memory_items: int = MEMORY_ITEMS, memory_bytes: int = MEMORY_BYTES,
                 disk_files: int = DISK_FILES) -> None:
        self.folder = folder
        self._disk_files = disk_files
        self._written = 0  # new files since the start; worker threads, under _prune_lock
        self._prune_lock = threading.Lock()
        self._post = post
        self._threads_wanted = threads
        self._memory_items = memory_items
        self._memory_bytes = memory_bytes
        self._memory: OrderedDict[str, bytes | str] = OrderedDict()  # PNG, or why there is none
        self._memory_used = 0
        self._in_flight: set[str] = set()
        self._listeners: list[Callable[[ThumbnailReady], None]] = []
        self._jobs: queue.LifoQueue[tuple[str, FileRecord] | None] = queue.LifoQueue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.made = 0  # thumbnails generated (not read back from the disk cache); Tk thread
        self._unsubscribe = dispatcher.subscribe(ThumbnailReady, self._on_ready)

    # -- Worker ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Threads start with the first request; nothing to do here."""

    def stop(self) -> None:
        self._stopping.set()
        self._unsubscribe()
        for _ in self._threads:
            self._jobs.put(None)

    def join(self, timeout: float) -> bool:
        for thread in self._threads:
            thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    # -- Tk thread -------------------------------------------------------------------------------

    def request(self, file: FileRecord) -> bytes | str | None:
        """The PNG if it is in memory, the reason when there can be none, else None: then it is
        being made and a ThumbnailReady will follow."""
        key = memory_key(file)
        known = self._memory.get(key)
        if known is not None:
            self._memory.move_to_end(key)
            return known
        if key not in self._in_flight and not self._stopping.is_set():
            self._in_flight.add(key)
            self._ensure_threads()
            self._jobs.put((key, file))
        return None

    def add_listener(self, listener: Callable[[ThumbnailReady], None]) -> Callable[[], None]:
        """Call ``listener`` (on the Tk thread) for every thumbnail that becomes ready."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def cached(self, file: FileRecord) -> bytes | str | None:
        return self._memory.get(memory_key(file))

    def _on_ready(self, event: ThumbnailReady) -> None:
        self._in_flight.discard(event.key)
        if event.made:
            self.made += 1
        self._remember(event.key, event.png if event.png is not None else event.error or "")
        for listener in tuple(self._listeners):
            listener(event)

    def _remember(self, key: str, value: bytes | str) -> None:
        old = self._memory.pop(key, None)
        self._memory_used -= _weight(old)
        self._memory[key] = value
        self._memory_used += _weight(value)
        while self._memory and (len(self._memory) > self._memory_items
                                or self._memory_used > self._memory_bytes):
            _, dropped = self._memory.popitem(last=False)
            self._memory_used -= _weight(dropped)

    def _ensure_threads(self) -> None:
        while len(self._threads) < self._threads_wanted:
            thread = threading.Thread(target=self._work, daemon=True,
                                      name=f"thumbnail-{len(self._threads) + 1}")
            thread.start()
            self._threads.append(thread)

    # -- worker threads --------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            job = self._jobs.get()
            if job is None:
                break
            key, file = job
            try:
                png, made = self._thumbnail(file)
                event = ThumbnailReady(key, file.id, png, None, made,
                                       threading.current_thread().name)
            except ThumbnailError as exc:
                event = ThumbnailReady(key, file.id, None, f"Preview unavailable: {exc}", False,
                                       threading.current_thread().name)
            except Exception as exc:  # one bad picture must not end the thread
                log.exception("thumbnail of file %s failed", file.id)
                event = ThumbnailReady(key, file.id, None,
                                       f"Preview unavailable: {_short(exc)}", False,
                                       threading.current_thread().name)
            self._post(event)

    def _thumbnail(self, file: FileRecord) -> tuple[bytes, bool]:
        """(PNG, whether it was made now rather than read from the disk cache)."""
        path = Path(file.path or "")
        cached = self.folder / f"{_disk_key(file, path)}.png"
        try:
            data = cached.read_bytes()
            if data.startswith(b"\x89PNG\r\n\x1a\n"):
                os.utime(cached)  # the modification time says when it was last used
                return data, False
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.info("thumbnail cache %s unreadable: %s", cached.name, exc)
        data = make_thumbnail(path)
        try:
            ensure_private_dir(self.folder)
            atomic_write_bytes(cached, data)
            self._maybe_prune()
        except OSError as exc:  # a full or read-only disk costs the cache, not the preview
            log.warning("cannot keep thumbnail %s: %s", cached.name, exc)
        return data, True

    def _maybe_prune(self) -> None:
        with self._prune_lock:
            self._written += 1
            if self._written % PRUNE_EVERY != 1:
                return  # the first write after a start looks too: the last run may have grown it
            prune_folder(self.folder, self._disk_files)


def prune_folder(folder: Path, keep: int) -> int:
    """Delete all but the ``keep`` most recently used thumbnails; returns how many went."""
    entries = []
    for path in folder.glob("*.png"):
        with contextlib.suppress(OSError):
            entries.append((path.stat().st_mtime_ns, path))
    if len(entries) <= keep:
        return 0
    entries.sort(reverse=True)
    removed = 0
    for _, path in entries[keep:]:
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def _disk_key(file: FileRecord, path: Path) -> str:
    if file.sha256 and _SHA256_HEX.fullmatch(file.sha256):
        return file.sha256
    try:
        stat = path.stat()
    except OSError:
        raise ThumbnailError("the file is no longer there") from None
    # without a content hash, where it lies and when it last changed name the picture
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()


def _weight(value: bytes | str | None) -> int:
    return len(value) if isinstance(value, bytes) else 0


def _short(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:120]
