"""Memory with a million messages stored: the app's RSS with a 1M-message profile vs an empty one.

A profile gets 1,000,000 messages (50,000 with ``--quick``): one chat of 100,000 (10,000) and the
rest spread over 200 others, through the same ``receive_many`` path the workers use (FTS index
included). Then the real app (``build_app`` with its window, on Xvfb when no display is set) is
started in a fresh process per case, and its resident memory read once the window is drawn:

* ``empty``: a new, empty profile (the peer figure: what the app costs with nothing stored);
* ``started``: the big profile, window shown, no chat open;
* ``open``: the big profile with the 100k chat open and five older pages scrolled in.

Each case is run ``--repeats`` times (fresh process each) and the median taken. Also reported: the
database's size on disk (after the writer's checkpoint) and bytes per message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    Result,
    TextGenerator,
    add_dialogs,
    fill,
    finish,
    median,
    now_ms,
    parse_args,
    say,
    x_display,
)

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
MIB = 1 << 20
BIG_DIALOG = 2000
OLDER_PAGES = 5
TARGET_RATIO = 1.5  # the app with 1M messages stored and a 100k chat open vs an empty profile


def build_profile(folder: Path, total: int, big: int) -> tuple[Path, float]:
    """The big profile; returns its folder and the seconds spent ingesting."""
    from chimera_tk.profiles import profile_paths
    from chimera_tk.store import Store

    paths = profile_paths("bench", folder).ensure()
    store = Store.open(paths.database)
    gen = TextGenerator(seed=17)
    try:
        others = add_dialogs(store, 200)
        store.dialogs.upsert(BIG_DIALOG, "user", f"Archive ({big:,} messages)")
        rest = total - big
        start_ms = now_ms() - total * 60_000

        def progress(done: int) -> None:
            if done % 200_000 < 10_000:
                say(f"    {done:,} messages")

        spent = fill(store, gen, others, rest, start_ms=start_ms, step_ms=60_000,
                     prefix="rest", progress=progress)
        spent += fill(store, gen, [BIG_DIALOG], big, start_ms=start_ms, step_ms=60_000,
                      prefix="big", first=rest)
    finally:
        store.close()
    return folder, spent


def database_bytes(database: Path) -> int:
    return sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))


# == the measured app (a child process per case) ===================================================


def run_app(folder: Path, open_chat: bool) -> dict[str, Any]:
    import psutil

    from chimera_tk.app import build_app
    from chimera_tk.config import Config
    from chimera_tk.profiles import profile_paths

    paths = profile_paths("bench", folder).ensure()
    app = build_app(paths, Config(), theme="light")
    try:
        app.start()
        root = app.root
        root.update()
        loaded = 0
        if open_chat:
            window = app.window
            window.open_dialog(BIG_DIALOG)
            root.update_idletasks()
            root.update()
            view = window.chat.messages
            for _ in range(OLDER_PAGES):
                before = len(view.loaded)
                view.text.yview_moveto(0.0)
                deadline = time.monotonic() + 5
                while len(view.loaded) == before and time.monotonic() < deadline:
                    root.update()
            loaded = len(view.loaded)
            if loaded == 0:
                raise AssertionError("the big chat showed no messages")
        for _ in range(5):  # let idle work (counts, badges) settle before reading memory
            root.update()
            time.sleep(0.05)
        info = psutil.Process().memory_full_info()
        return {"rss": info.rss, "uss": info.uss, "loaded": loaded}
    finally:
        app.shutdown()


def measure_case(folder: Path, open_chat: bool, display: str) -> dict[str, Any]:
    env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--role", "app", "--folder", str(folder)]
                          + (["--open"] if open_chat else []),
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the app process failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--role" in argv:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--role", choices=("app",))
        parser.add_argument("--folder", type=Path, required=True)
        parser.add_argument("--open", action="store_true")
        role = parser.parse_args(argv)
        print(json.dumps(run_app(role.folder, role.open)), flush=True)
        return 0

    def extra(parser: Any) -> None:
        parser.add_argument("--messages", type=int, help="messages stored (default 1,000,000; "
                                                         "quick 50,000)")
        parser.add_argument("--repeats", type=int, help="app starts per case (default 3; "
                                                        "quick 1)")

    args = parse_args(__doc__.splitlines()[0], argv, extra)
    total = args.messages or (50_000 if args.quick else 1_000_000)
    big = min(total // 2, 10_000 if args.quick else 100_000)
    repeats = args.repeats or (1 if args.quick else 3)
    say(f"memory: {total:,} messages stored, a chat of {big:,} open; {repeats} start(s) per case")
    with tempfile.TemporaryDirectory(prefix="chimera-bench-mem-") as tmp:
        tmp_path = Path(tmp)
        empty = tmp_path / "empty"
        from chimera_tk.profiles import profile_paths
        from chimera_tk.store import Store

        Store.open(profile_paths("bench", empty).ensure().database).close()
        full, spent = build_profile(tmp_path / "full", total, big)
        database = profile_paths("bench", full).database
        db_bytes = database_bytes(database)
        say(f"  ingested in {spent:.1f} s; database {db_bytes / MIB:.0f} MiB")
        cases: dict[str, list[dict[str, Any]]] = {"empty": [], "started": [], "open": []}
        with x_display() as display:
            for round_no in range(repeats):
                for name, folder, open_chat in (("empty", empty, False),
                                                ("started", full, False),
                                                ("open", full, True)):
                    cases[name].append(measure_case(folder, open_chat, display))
                    say(f"  round {round_no + 1} {name:<8}: RSS "
                        f"{cases[name][-1]['rss'] / MIB:6.1f} MiB, USS "
                        f"{cases[name][-1]['uss'] / MIB:6.1f} MiB")

    def rss(name: str, key: str = "rss") -> float:
        return median([case[key] for case in cases[name]]) / MIB

    loaded = cases["open"][-1]["loaded"]
    return finish("memory 1M", [
        Result("memory RSS, empty profile", rss("empty"), "MiB",
               note=f"window shown; median of {repeats} starts"),
        Result("memory RSS, 1M stored, started", rss("started"), "MiB",
               note=f"{total:,} messages, no chat open"),
        Result("memory RSS, 1M stored, big chat open", rss("open"), "MiB",
               note=f"{big:,}-message chat, {loaded} messages in the view"),
        Result("memory RSS, 1M stored + big chat open vs empty profile", rss("open"), "MiB",
               better="lower", ratio_target=1 / TARGET_RATIO,
               note=f"at most {TARGET_RATIO:g}x the empty profile's RSS",
               peer="the same app, window shown, nothing stored", peer_figure=rss("empty")),
        Result("memory RSS growth for 1M stored + open chat", rss("open") - rss("empty"), "MiB"),
        Result("memory USS 1M open/empty", rss("open", "uss") / rss("empty", "uss"), "x",
               note="unique set size: pages only this process holds"),
        Result("memory database size", db_bytes / MIB, "MiB",
               note=f"{total:,} messages with the FTS index, WAL checkpointed"),
        Result("memory database bytes per message", db_bytes / total, "B"),
    ], args.results)


if __name__ == "__main__":
    sys.exit(main())
