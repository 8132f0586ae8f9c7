"""Shared fixtures: temporary profiles, real SQLite files, and a real X server for GUI tests.

GUI tests need a display. When DISPLAY is unset the suite starts its own Xvfb once per session
(CI has no display); a missing Xvfb is an error, never a skip, so CI cannot pass without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chimera_tk.config import Config
from chimera_tk.profiles import ProfilePaths, profile_paths
from chimera_tk.store import Store

# At the end of every session: no secret in any log the suite produced (tests/secret_scan.py).
pytest_plugins = ("tests.secret_scan",)


@pytest.fixture(scope="session", autouse=True)
def _announce_on_loopback_only() -> Iterator[None]:
    """No test may broadcast on a real network: LAN discovery started by any test, or by any
    process a test starts, in this namespace sends to the loopback broadcast only. Tests in
    network namespaces give their processes an environment without this variable."""
    previous = os.environ.get("CHIMERA_BROADCAST_ADDRESSES")
    os.environ["CHIMERA_BROADCAST_ADDRESSES"] = "127.255.255.255"
    yield
    if previous is None:
        del os.environ["CHIMERA_BROADCAST_ADDRESSES"]
    else:
        os.environ["CHIMERA_BROADCAST_ADDRESSES"] = previous


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def paths(data_dir: Path) -> ProfilePaths:
    return profile_paths("test", data_dir).ensure()


@pytest.fixture
def store(paths: ProfilePaths) -> Iterator[Store]:
    opened = Store.open(paths.database)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """A display for Tk: the caller's, or an Xvfb started for this test session."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("GUI tests need Xvfb (apt-get install xvfb) or a DISPLAY", pytrace=False)
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    if not number:
        process.kill()
        pytest.fail("Xvfb did not start", pytrace=False)
    display = f":{number}"
    os.environ["DISPLAY"] = display
    try:
        yield display
    finally:
        del os.environ["DISPLAY"]
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def app(x_display: str, paths: ProfilePaths) -> Iterator[object]:
    """The whole application built on a temporary profile, window shown, torn down after."""
    from chimera_tk.app import build_app

    built = build_app(paths, Config(), theme="light")
    built.start()
    built.root.update()
    yield built
    built.shutdown()


@pytest.fixture(autouse=True)
def _no_key_held_down() -> Iterator[None]:
    """Release any key a previous test left pressed on the shared X server.

    A key left down (an xdotool run cut short, or a press and release sent by different means)
    auto-repeats into whatever window has the focus next: a held Return saved a Settings dialog in
    an endless loop. Only keys are touched, and only when a test display is in use."""
    _release_held_keys()
    yield


def _release_held_keys() -> None:
    if not os.environ.get("DISPLAY"):
        return
    try:
        from Xlib import X, display
        from Xlib.ext import xtest
    except ImportError:
        return
    try:
        screen = display.Display()
    except Exception:  # no server any more (its fixture ended): nothing can be held down
        return
    try:
        keymap = screen.query_keymap()
        held = [index * 8 + bit for index, byte in enumerate(keymap) for bit in range(8)
                if byte & (1 << bit)]
        for keycode in held:
            xtest.fake_input(screen, X.KeyRelease, keycode)
        screen.sync()
    finally:
        screen.close()


def pump_until(app: object, condition, timeout: float = 5.0) -> bool:
    """Let Tk run (timers, the event pump, redraws) until ``condition()`` holds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.root.update()
        if condition():
            return True
        time.sleep(0.005)
    return condition()
