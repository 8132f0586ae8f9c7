"""Picture previews: made on a worker thread, cached on disk and in memory, shown in the chat.

Real Pillow, real files in tmp_path, the real window on Xvfb. The only stand-in is the desktop's
"open with the default application" (there is no desktop here to open it): a recorder.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from chimera_tk.events import EventDispatcher, EventQueue, ThumbnailReady
from chimera_tk.store.records import FileRecord, IncomingMessage, utc_now_ms
from chimera_tk.views.thumbnails import (
    ThumbnailCache,
    ThumbnailError,
    make_thumbnail,
    prune_folder,
)
from tests.conftest import pump_until


def _file(path: Path, file_id: int = 1, *, sha: bool = True,
          mime: str = "image/png") -> FileRecord:
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if sha else None
    return FileRecord(file_id, path.name, path.stat().st_size, digest, mime, str(path),
                      "complete", path.stat().st_size)


def _picture(path: Path, size: tuple[int, int] = (800, 600), colour: str = "orange") -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


class _Cache:
    """A ThumbnailCache with the queue and dispatcher the app would give it."""

    def __init__(self, folder: Path) -> None:
        self.events = EventQueue()
        self.dispatcher = EventDispatcher()
        self.ready: list[ThumbnailReady] = []
        self.dispatcher.subscribe(ThumbnailReady, self.ready.append)
        self.cache = ThumbnailCache(folder, self.events.post, self.dispatcher)

    def wait(self) -> ThumbnailReady:
        event = self.events.get(timeout=30)
        assert isinstance(event, ThumbnailReady), event
        self.dispatcher.dispatch(event)
        return event

    def close(self) -> None:
        self.cache.stop()
        assert self.cache.join(10)


@pytest.fixture
def cache(tmp_path: Path):
    made = _Cache(tmp_path / "cache" / "thumbs")
    yield made
    made.close()


def test_thumbnail_is_made_on_a_worker_thread_and_kept_on_disk_private(cache: _Cache,
                                                                        tmp_path: Path) -> None:
    picture = _file(_picture(tmp_path / "photo.png"))
    assert cache.cache.request(picture) is None  # not known yet: it is being made
    event = cache.wait()
    assert event.worker.startswith("thumbnail-")
    assert event.worker != threading.current_thread().name
    assert event.made and event.error is None
    with Image.open(io.BytesIO(event.png)) as thumb:
        assert thumb.size == (320, 240)  # 800x600 kept its shape inside 320x240
    on_disk = tmp_path / "cache" / "thumbs" / f"{picture.sha256}.png"
    assert on_disk.read_bytes() == event.png
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600


def test_second_open_is_a_cache_hit_in_memory_then_on_disk(cache: _Cache,
                                                           tmp_path: Path) -> None:
    picture = _file(_picture(tmp_path / "photo.png"))
    cache.cache.request(picture)
    first = cache.wait()
    assert cache.cache.request(picture) == first.png  # memory: no thread, no event
    assert cache.events.empty() and cache.cache.made == 1

    again = _Cache(tmp_path / "cache" / "thumbs")  # the next start of the app
    try:
        assert again.cache.request(picture) is None
        from_disk = again.wait()
        assert from_disk.png == first.png and not from_disk.made
        assert again.cache.made == 0
    finally:
        again.close()


def test_the_memory_cache_is_bounded_and_forgets_the_least_recent(tmp_path: Path) -> None:
    events, dispatcher = EventQueue(), EventDispatcher()
    cache = ThumbnailCache(tmp_path / "thumbs", events.post, dispatcher, memory_items=2)
    try:
        pictures = [_file(_picture(tmp_path / f"{n}.png", colour=colour), n)
                    for n, colour in enumerate(("red", "green", "blue"), start=1)]
        for picture in pictures[:2]:
            cache.request(picture)
            dispatcher.dispatch(events.get(timeout=30))
        assert cache.request(pictures[0]) is not None  # now the most recent of the two
        cache.request(pictures[2])
        dispatcher.dispatch(events.get(timeout=30))
        assert cache.cached(pictures[1]) is None  # the least recent made room
        assert cache.cached(pictures[0]) is not None and cache.cached(pictures[2]) is not None
    finally:
        cache.stop()
        assert cache.join(10)


def test_a_picture_without_a_hash_is_cached_by_path_and_time(cache: _Cache,
                                                             tmp_path: Path) -> None:
    picture = _file(_picture(tmp_path / "from-telegram.jpg"), sha=False, mime="image/jpeg")
    cache.cache.request(picture)
    assert cache.wait().png is not None
    names = [p.name for p in (tmp_path / "cache" / "thumbs").iterdir()]
    assert len(names) == 1 and len(names[0]) == len("0" * 64 + ".png")


def test_the_disk_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    folder = tmp_path / "thumbs"
    folder.mkdir()
    for n in range(5):
        (folder / f"{n}.png").write_bytes(b"png")
        os.utime(folder / f"{n}.png", ns=(n * 10**9, n * 10**9))
    assert prune_folder(folder, keep=3) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["2.png", "3.png", "4.png"]


def test_exif_orientation_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show it rotated by 90 degrees
    Image.new("RGB", (400, 200), "green").save(path, exif=exif.tobytes())
    with Image.open(io.BytesIO(make_thumbnail(path))) as thumb:
        assert thumb.height > thumb.width


def test_animated_gif_shows_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "blink.gif"
    frames = [Image.new("RGB", (60, 40), colour) for colour in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(io.BytesIO(make_thumbnail(path))) as thumb:
        red, _green, blue = thumb.convert("RGB").getpixel((30, 20))
        assert red > 200 and blue < 50


@pytest.mark.parametrize("content", [b"this is not a picture at all",
                                     b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_a_bad_image_gets_a_placeholder_not_an_exception(cache: _Cache, tmp_path: Path,
                                                         content: bytes) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    cache.cache.request(_file(path))
    event = cache.wait()
    assert event.png is None
    assert event.error.startswith("Preview unavailable:")
    assert cache.cache.request(_file(path)) == event.error  # remembered: not tried again
    assert not (tmp_path / "cache" / "thumbs").exists() or not any(
        (tmp_path / "cache" / "thumbs").iterdir())


def test_a_postscript_file_dressed_as_a_png_is_never_decoded(tmp_path: Path) -> None:
    # Pillow would hand EPS to Ghostscript; a peer chooses the bytes, so only safe decoders run
    path = tmp_path / "holiday.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n")
    with pytest.raises(ThumbnailError, match="not a picture format"):
        make_thumbnail(path)


def test_a_truncated_jpeg_is_reported_as_damaged(tmp_path: Path) -> None:
    whole = io.BytesIO()
    Image.effect_noise((300, 300), 50).convert("RGB").save(whole, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.getvalue()[:2000])
    with pytest.raises(ThumbnailError, match="damaged"):
        make_thumbnail(path)


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    small = io.BytesIO()
    Image.new("1", (8, 8)).save(small, format="PNG")
    data = bytearray(small.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_refused_before_decoding(cache: _Cache, tmp_path: Path) -> None:
    bomb = _png_declaring(tmp_path / "bomb.png", 100_000, 100_000)
    assert bomb.stat().st_size < 200
    with pytest.raises(ThumbnailError, match="too large"):
        make_thumbnail(bomb)
    cache.cache.request(_file(bomb))
    event = cache.wait()
    assert event.png is None and "too large" in event.error


# -- in the window -------------------------------------------------------------------------------


def _received_picture(app, dialog_id: int, path: Path, uid: str) -> int:
    size = path.stat().st_size
    file = app.store.files.create(path.name, size, sha256=hashlib.sha256(
        path.read_bytes()).hexdigest(), mime="image/png", path=str(path), state="complete")
    message, _ = app.store.messages.receive(IncomingMessage(
        dialog_id=dialog_id, uid=uid, sender_id=dialog_id, sender_name="Ana", text="",
        sent_at=utc_now_ms(), transport="lan", file_id=file.id))
    return message.id


@pytest.mark.gui
def test_a_chat_with_pictures_shows_them_inline_and_a_click_opens_the_file(
        app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import chimera_tk.views.desktop as desktop

    opened: list[Path] = []
    # The system's default application cannot run here: record what would have been opened.
    monkeypatch.setattr(desktop, "open_path", opened.append)
    app.store.dialogs.upsert(1, "user", "Ana")
    first = _picture(tmp_path / "harbour.png", (640, 480), "steelblue")
    second = _picture(tmp_path / "tall.png", (300, 900), "salmon")
    first_id = _received_picture(app, 1, first, "p1")
    second_id = _received_picture(app, 1, second, "p2")
    app.window.dialogs.refresh()
    app.window.open_dialog(1)
    view = app.window.chat.messages
    assert pump_until(app, lambda: len(view.text.image_names()) == 2, timeout=30)
    assert "Loading preview" not in view.visible_text()

    image = str(view.text.tag_ranges(f"thumb{first_id}")[0])
    assert view.text.image_cget(image, "image")  # an embedded picture sits at that index
    view.text.see(image)
    app.root.update()
    x, y, width, height = view.text.bbox(image)
    assert width > 200 and height > 150  # the 640x480 picture as a 320x240 thumbnail
    view.text.event_generate("<Motion>", x=x + width // 2, y=y + height // 2)
    view.text.event_generate("<Button-1>", x=x + width // 2, y=y + height // 2)
    view.text.event_generate("<ButtonRelease-1>", x=x + width // 2, y=y + height // 2)
    assert pump_until(app, lambda: len(opened) == 1)
    assert opened[0] == first

    # the keyboard way: Enter on the file line opens it too
    view.text.focus_force()
    view.text.mark_set("insert", f"{view.text.tag_ranges(f'thumb{second_id}')[0]} +1 lines")
    view.text.event_generate("<Return>")
    assert pump_until(app, lambda: len(opened) == 2)
    assert opened[1] == second


@pytest.mark.gui
def test_closing_the_chat_releases_its_pictures(app, tmp_path: Path) -> None:
    app.store.dialogs.upsert(1, "user", "Ana")
    _received_picture(app, 1, _picture(tmp_path / "a.png"), "p1")
    app.window.dialogs.refresh()
    app.window.open_dialog(1)
    view = app.window.chat.messages
    assert pump_until(app, lambda: len(view.text.image_names()) == 1, timeout=30)
    assert len(view.previews._photos) == 1
    app.window.chat.show_placeholder()
    assert len(view.text.image_names()) == 0 and view.previews._photos == {}


@pytest.mark.gui
def test_a_broken_picture_says_preview_unavailable_in_the_chat(app, tmp_path: Path) -> None:
    app.store.dialogs.upsert(1, "user", "Ana")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _received_picture(app, 1, broken, "p1")
    app.window.dialogs.refresh()
    app.window.open_dialog(1)
    view = app.window.chat.messages
    assert pump_until(app, lambda: "Preview unavailable" in view.visible_text(), timeout=30)
    assert len(view.text.image_names()) == 0
    assert "broken.png" in view.visible_text()
    assert os.path.exists(broken)
