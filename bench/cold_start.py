"""Cold start from source: ``python -m chimera_tk`` until its window is on screen and painted.

Each run spawns the real command on one profile folder (the first run creates the profile) and
watches the X server: with python-xlib, the clock stops at the MapNotify of the window whose
WM_CLASS is Chimera ("visible"), then at the first screen grab of that window that is no longer a
blank background ("first paint"), then when two grabs in a row are equal ("settled"). Without
python-xlib it polls ``xdotool search --onlyvisible --class Chimera`` and reports visibility only.
Every run is ended with SIGTERM and must exit 0. One extra run under ``-X importtime`` lists the
heaviest imports before the first paint and checks that Telethon and pystray are not among them.
The same runs are then repeated with the one-file executable (target 1.5 s: it unpacks itself
into a temporary folder first). A full run builds it afresh from this checkout first
(``scripts/build-exe`` -> ``dist/chimera``, installing the ``build`` extra when PyInstaller is
missing), so the figure is never that of an older build; a build that fails is a FAIL row. A
``--quick`` run uses an executable already built and skips it otherwise.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common import Result, finish, median, ms, parse_args, say, x_display

TARGET_MS = 500.0
EXE_TARGET_MS = 1500.0
EXE = Path(__file__).resolve().parent.parent / "dist" / "chimera"
WINDOW_CLASS = "Chimera"
TIMEOUT_S = 30.0
MUST_NOT_IMPORT = ("telethon", "pystray")
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")


@dataclass(frozen=True, slots=True)
class StartRun:
    visible_s: float
    painted_s: float | None
    settled_s: float | None
    exit_code: int | None
    exit_s: float


def command(data_dir: Path, *extra: str, exe: Path | None = None) -> list[str]:
    if exe is not None:
        return [str(exe), "--data-dir", str(data_dir), "--theme", "light"]
    return [sys.executable, *extra, "-m", "chimera_tk", "--data-dir", str(data_dir),
            "--theme", "light"]


class XWatcher:
    """Waits for the Chimera window on the X server and grabs its pixels (python-xlib)."""

    def __init__(self, display_name: str) -> None:
        from Xlib import X
        from Xlib import display as xdisplay

        self._X = X
        self._display = xdisplay.Display(display_name)
        self._root = self._display.screen().root
        self._root.change_attributes(event_mask=X.SubstructureNotifyMask)
        self._display.sync()

    def drain(self) -> None:
        while self._display.pending_events():
            self._display.next_event()

    def wait_mapped(self, proc: subprocess.Popen, deadline: float):
        """The Chimera top-level window once it is mapped, or None if the process died."""
        fd = self._display.fileno()
        while time.perf_counter() < deadline:
            while self._display.pending_events():
                event = self._display.next_event()
                if event.type == self._X.MapNotify:
                    window = self._chimera_in(event.window)
                    if window is not None:
                        return window
            if proc.poll() is not None:
                return None
            select.select([fd], [], [], 0.05)
        return None

    def _chimera_in(self, window):
        """The window itself, or the client inside a window manager's frame, if it is Chimera."""
        try:
            candidates = [window, *window.query_tree().children]
            for candidate in candidates:
                wm_class = candidate.get_wm_class()
                if wm_class and wm_class[1] == WINDOW_CLASS:
                    return candidate
        except Exception:  # the window may be gone already
            return None
        return None

    def grab(self, window) -> bytes | None:
        try:
            geometry = window.get_geometry()
            image = window.get_image(0, 0, geometry.width, geometry.height,
                                     self._X.ZPixmap, 0xFFFFFFFF)
        except Exception:  # unmapped or destroyed between the two requests
            return None
        return image.data

    def close(self) -> None:
        self._display.close()


def _blank(pixels: bytes) -> bool:
    return pixels == pixels[:4] * (len(pixels) // 4)


def wait_visible_xdotool(proc: subprocess.Popen, deadline: float) -> bool:
    while time.perf_counter() < deadline and proc.poll() is None:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--class", WINDOW_CLASS],
                               capture_output=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            return True
        time.sleep(0.002)
    return False


def terminate(proc: subprocess.Popen) -> tuple[int | None, float]:
    """SIGTERM, as a session logout does; (exit code, seconds to exit)."""
    start = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return None, time.perf_counter() - start
    return proc.returncode, time.perf_counter() - start


def one_start(data_dir: Path, watcher: XWatcher | None, extra: tuple[str, ...] = (),
              stderr=subprocess.DEVNULL,
              exe: Path | None = None) -> tuple[StartRun, subprocess.Popen, float]:
    """Start, time and SIGTERM one instance; also returns the process and its start time."""
    if watcher is not None:
        watcher.drain()
    start = time.perf_counter()
    proc = subprocess.Popen(command(data_dir, *extra, exe=exe), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = start + TIMEOUT_S
    painted = settled = None
    try:
        if watcher is None:
            if not wait_visible_xdotool(proc, deadline):
                raise RuntimeError("the Chimera window did not become visible")
            visible = time.perf_counter() - start
        else:
            window = watcher.wait_mapped(proc, deadline)
            if window is None:
                raise RuntimeError(f"the Chimera window did not appear (exit {proc.poll()})")
            visible = time.perf_counter() - start
            previous = None
            while time.perf_counter() < deadline and settled is None:
                pixels = watcher.grab(window)
                now = time.perf_counter() - start
                if pixels is None or _blank(pixels):
                    if proc.poll() is not None:
                        break
                    continue
                if painted is None:
                    painted = now
                elif pixels == previous[1]:
                    settled = previous[0]
                previous = (now, pixels)
    finally:
        code, exit_s = terminate(proc)
    return StartRun(visible, painted, settled, code, exit_s), proc, start


def import_profile(data_dir: Path, watcher: XWatcher | None) -> tuple[list[tuple[int, str]],
                                                                      set[str]]:
    """(top-level imports by cumulative µs, every module) imported before the first paint."""
    lines: list[tuple[float, str]] = []
    read_fd, write_fd = os.pipe()
    reader_file = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")

    def read() -> None:
        for line in reader_file:
            lines.append((time.perf_counter(), line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        run, _proc, start = one_start(data_dir, watcher, ("-X", "importtime"), stderr=write_fd)
    finally:
        os.close(write_fd)
    reader.join(10)
    reader_file.close()
    cutoff = start + (run.painted_s or run.visible_s)
    top: list[tuple[int, str]] = []
    modules: set[str] = set()
    for stamp, line in lines:
        match = _IMPORT_LINE.match(line)
        if not match or stamp > cutoff:
            continue
        modules.add(match.group(4))
        if len(match.group(3)) == 1:
            top.append((int(match.group(2)), match.group(4)))
    top.sort(reverse=True)
    return top, modules


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    runs_wanted = 2 if args.quick else 7
    built = None if args.quick else build_executable()
    with tempfile.TemporaryDirectory(prefix="chimera-bench-start-") as tmp, \
            x_display() as display:
        data_dir = Path(tmp)
        watcher: XWatcher | None
        try:
            watcher = XWatcher(display)
        except ImportError:
            if shutil.which("xdotool") is None:
                raise RuntimeError("need python-xlib or xdotool to see the window") from None
            say("  python-xlib is missing: timing visibility with xdotool, no paint detection")
            watcher = None
        say(f"cold start: {' '.join(command(data_dir))} on display {display}, {runs_wanted} runs")
        floor = []
        for _ in range(3):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            floor.append(time.perf_counter() - began)
        runs = []
        try:
            for index in range(runs_wanted):
                run, _proc, _start = one_start(data_dir, watcher)
                runs.append(run)
                say(f"  run {index + 1}: visible {ms(run.visible_s):6.0f} ms, first paint "
                    f"{_ms_or_dash(run.painted_s)}, settled {_ms_or_dash(run.settled_s)}; "
                    f"SIGTERM -> exit {run.exit_code} in {ms(run.exit_s):.0f} ms")
            top, modules = import_profile(data_dir, watcher)
            exe_runs: list[StartRun] = []
            exe_failures = 0
            if EXE.is_file():
                say(f"cold start of the one-file executable {EXE}, {runs_wanted} runs")
                for index in range(runs_wanted):
                    try:
                        run, _proc, _start = one_start(data_dir, watcher, exe=EXE)
                    except RuntimeError as exc:  # a stale or broken build: say so, keep going
                        say(f"  exe run {index + 1}: {exc}; rebuild with scripts/build-exe")
                        exe_failures += 1
                        continue
                    exe_runs.append(run)
                    say(f"  exe run {index + 1}: visible {ms(run.visible_s):6.0f} ms, first "
                        f"paint {_ms_or_dash(run.painted_s)}; exit {run.exit_code}")
            else:
                say(f"  {EXE} not built (scripts/build-exe): executable start not measured")
        finally:
            if watcher is not None:
                watcher.close()

    say("  heaviest imports before the first paint (cumulative):")
    for micros, name in top[:12]:
        say(f"    {micros / 1000:8.1f} ms  {name}")
    forbidden = sorted(m for m in modules if m.split(".")[0] in MUST_NOT_IMPORT)
    for package in MUST_NOT_IMPORT:
        verdict = "IMPORTED (must not be)" if any(
            m.split(".")[0] == package for m in forbidden) else "not imported (good)"
        say(f"  {package} before the first paint: {verdict}")

    visible = [r.visible_s for r in runs]
    painted = [r.painted_s for r in runs if r.painted_s is not None]
    settled = [r.settled_s for r in runs if r.settled_s is not None]
    results = [Result("cold start python -c pass floor", ms(median(floor)), "ms"),
               Result("cold start window visible median", ms(median(visible)), "ms", TARGET_MS,
                      "lower")]
    if painted:
        results.append(Result("cold start first paint median", ms(median(painted)), "ms",
                              TARGET_MS, "lower"))
        results.append(Result("cold start first run first paint", ms(painted[0]), "ms"))
    if settled:
        results.append(Result("cold start paint settled median", ms(median(settled)), "ms"))
    results += [
        Result("cold start exit 0 on SIGTERM", sum(r.exit_code == 0 for r in runs), "runs",
               len(runs), "equal"),
        Result("cold start SIGTERM to exit median", ms(median([r.exit_s for r in runs])), "ms"),
        Result("cold start imports before paint", sum(micros for micros, _ in top) / 1000, "ms"),
        Result("cold start telethon/pystray imported", len(forbidden), "modules", 0, "equal"),
    ]
    if built is False:
        results.append(Result("cold start exe built from this checkout", 0, "builds", 1, "equal"))
    if exe_failures:
        results.append(Result("cold start exe window appeared", len(exe_runs), "runs",
                              len(exe_runs) + exe_failures, "equal"))
    if exe_runs:
        exe_painted = [r.painted_s or r.visible_s for r in exe_runs]
        results += [
            Result("cold start exe first paint median", ms(median(exe_painted)), "ms",
                   EXE_TARGET_MS, "lower"),
            Result("cold start exe / source first paint", median(exe_painted) / median(
                painted or visible), "x"),
            Result("exe size", EXE.stat().st_size / 2**20, "MiB"),
            Result("cold start exe exit 0 on SIGTERM", sum(r.exit_code == 0 for r in exe_runs),
                   "runs", len(exe_runs), "equal"),
        ]
    return finish("cold start", results, args.results)


def build_executable() -> bool:
    """``scripts/build-exe`` with this interpreter; True when ``dist/chimera`` was made."""
    root = EXE.parent.parent
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        say("cold start: installing PyInstaller (the build extra) to build the executable")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{root}[build]"],
                       check=False)
    say("cold start: building the one-file executable (scripts/build-exe)")
    began = time.perf_counter()
    EXE.unlink(missing_ok=True)
    done = subprocess.run([str(root / "scripts" / "build-exe")], cwd=root,
                          env={**os.environ, "PYTHON": sys.executable}, check=False)
    if done.returncode or not EXE.is_file():
        say(f"  the build failed (exit {done.returncode}): executable start not measured")
        return False
    say(f"  built in {time.perf_counter() - began:.0f} s")
    return True


def _ms_or_dash(seconds: float | None) -> str:
    return "-" if seconds is None else f"{ms(seconds):6.0f} ms"


if __name__ == "__main__":
    sys.exit(main())
