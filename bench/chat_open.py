"""Opening a chat of 100,000 messages: the page queries, and the window painting the newest page.

The profile holds the big chat plus 20 small ones (real WAL database in a temporary folder). The
queries are timed on their own connection. In the real window (Xvfb when no display is set),
"painted" is the time from ``MainWindow.open_dialog`` until ``update_idletasks()`` and
``update()`` return: Tk has laid out and drawn the page, and ``update`` ends with an XSync, so the X
server has the drawing too. Before each timed open another chat is shown, as a user switching
chats would. Loading an older page is timed through the real path: the view is scrolled to the
top, the view's scroll callback schedules ``load_older``, and the clock stops when the page is in.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from common import (
    Result,
    TextGenerator,
    add_dialogs,
    fill,
    finish,
    median,
    ms,
    now_ms,
    parse_args,
    percentile,
    say,
    x_display,
)

from chimera_tk.config import Config
from chimera_tk.profiles import ProfilePaths, profile_paths
from chimera_tk.store import Store
from chimera_tk.views.message_view import PAGE_SIZE

TARGET_MS = 100.0
BIG_DIALOG = 2000


def build_profile(folder: Path, big: int, gen: TextGenerator) -> ProfilePaths:
    paths = profile_paths("bench", folder).ensure()
    store = Store.open(paths.database)
    try:
        small = add_dialogs(store, 20)
        fill(store, gen, small, 20 * 200, start_ms=now_ms() - 30 * 86_400_000, step_ms=60_000,
             prefix="small")
        store.dialogs.upsert(BIG_DIALOG, "user", f"Archive ({big:,} messages)")
        # One message a minute, so the history spans many days and day separators appear.
        spent = fill(store, gen, [BIG_DIALOG], big, start_ms=now_ms() - big * 60_000,
                     step_ms=60_000, prefix="big")
        say(f"  built a {big:,}-message chat in {spent:.1f} s")
    finally:
        store.close()
    return paths


def query_times(paths: ProfilePaths, repeats: int) -> dict[str, list[float]]:
    store = Store.open(paths.database)
    try:
        times: dict[str, list[float]] = {"first": [], "latest": [], "before": []}
        start = time.perf_counter()
        page = store.messages.latest_page(BIG_DIALOG, PAGE_SIZE)
        times["first"].append(time.perf_counter() - start)
        assert len(page) == PAGE_SIZE
        for _ in range(repeats):
            start = time.perf_counter()
            store.messages.latest_page(BIG_DIALOG, PAGE_SIZE)
            times["latest"].append(time.perf_counter() - start)
        # Keys from anywhere in the history: scrolling far back must cost the same as near.
        keys = [m.page_key for m in store.messages.latest_page(BIG_DIALOG, 100_000_000)[::997]]
        rng = random.Random(3)
        for _ in range(repeats):
            key = rng.choice(keys)
            start = time.perf_counter()
            store.messages.page_before(BIG_DIALOG, key, PAGE_SIZE)
            times["before"].append(time.perf_counter() - start)
        return times
    finally:
        store.close()


def gui_times(paths: ProfilePaths, opens: int, older_pages: int) -> dict[str, list[float]]:
    from chimera_tk.app import build_app

    app = build_app(paths, Config(), theme="light")
    times: dict[str, list[float]] = {"first": [], "open": [], "older": [], "older_pages": []}
    try:
        app.start()
        root = app.root
        root.update()
        window = app.window
        view = window.chat.messages
        last = Store.open(paths.database)
        newest = last.messages.latest_page(BIG_DIALOG, 1)[0]
        last.close()

        def open_big() -> float:
            start = time.perf_counter()
            window.open_dialog(BIG_DIALOG)
            root.update_idletasks()
            root.update()
            elapsed = time.perf_counter() - start
            if len(view.loaded) != PAGE_SIZE or view.loaded[-1].id != newest.id:
                raise AssertionError("the newest page is not what the view shows")
            if newest.text.split("\n")[0][:40] not in view.visible_text():
                raise AssertionError("the newest message's text is not in the widget")
            return elapsed

        def show_other() -> None:
            window.open_dialog(1001)
            root.update()

        times["first"].append(open_big())
        for _ in range(opens):
            show_other()
            times["open"].append(open_big())

        show_other()
        open_big()
        for _ in range(older_pages):
            before = len(view.loaded)
            start = time.perf_counter()
            view.text.yview_moveto(0.0)
            root.update()
            while len(view.loaded) == before and time.perf_counter() - start < 5.0:
                root.update()  # the scroll callback may land one idle round later
            elapsed = time.perf_counter() - start
            if len(view.loaded) == before:
                raise AssertionError("scrolling to the top loaded no older page")
            times["older"].append(elapsed)
            times["older_pages"].append((len(view.loaded) - before) / PAGE_SIZE)
        return times
    finally:
        app.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    big = 5_000 if args.quick else 100_000
    repeats = 20 if args.quick else 200
    opens = 3 if args.quick else 20
    older_pages = 3 if args.quick else 20
    say(f"chat open: a chat of {big:,} messages")
    with tempfile.TemporaryDirectory(prefix="chimera-bench-chat-") as tmp:
        paths = build_profile(Path(tmp), big, TextGenerator(seed=11))
        queries = query_times(paths, repeats)
        with x_display() as display:
            say(f"  window on display {display}")
            gui = gui_times(paths, opens, older_pages)

    for name, values in (("latest page", queries["latest"]), ("page before", queries["before"]),
                         ("painted", gui["open"]), ("older page", gui["older"])):
        say(f"  {name:<12} median {ms(median(values)):7.2f} ms  p95 "
            f"{ms(percentile(values, 95)):7.2f} ms  max {ms(max(values)):7.2f} ms "
            f"({len(values)} runs)")
    say(f"  pages loaded by each scroll to the top: {[int(p) for p in gui['older_pages']]}")
    say(f"  first query on a new connection {ms(queries['first'][0]):.2f} ms; first paint of "
        f"the chat {ms(gui['first'][0]):.1f} ms")
    pages_per_scroll = max(gui["older_pages"])
    results = [
        Result("chat latest_page query median", ms(median(queries["latest"])), "ms"),
        Result("chat latest_page query p95", ms(percentile(queries["latest"], 95)), "ms",
               TARGET_MS, "lower"),
        Result("chat page_before query p95", ms(percentile(queries["before"], 95)), "ms",
               TARGET_MS, "lower"),
        Result("chat open first paint", ms(gui["first"][0]), "ms", TARGET_MS, "lower"),
        Result("chat open painted median", ms(median(gui["open"])), "ms", TARGET_MS, "lower"),
        Result("chat open painted p95", ms(percentile(gui["open"], 95)), "ms", TARGET_MS,
               "lower"),
        Result("chat older page median", ms(median(gui["older"])), "ms", TARGET_MS, "lower"),
        Result("chat older page p95", ms(percentile(gui["older"], 95)), "ms", TARGET_MS, "lower"),
        # Informational: Tk sometimes reports the top again before the new page is measured, so
        # one scroll can load two pages; the user still sees the same place.
        Result("chat pages loaded per scroll", pages_per_scroll, "pages",
               note=f"{sum(p > 1 for p in gui['older_pages'])} of {older_pages} scrolls "
                    "loaded more than one page"),
    ]
    return finish(f"chat open ({big:,} messages)", results, args.results)


if __name__ == "__main__":
    sys.exit(main())
