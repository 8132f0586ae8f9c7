"""A desktop session for tray and notification tests: a private session D-Bus, a notification
daemon (dunst) and a tray host (trayer) on the test's X display, all started and ended here.

In CI (CI=true) a missing program is a failure, never a skip: .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

DUNSTRC = """\
[global]
    font = DejaVu Sans 10
    width = 360
    origin = top-right
    offset = 10x40
    mouse_left_click = do_action, close_current
[urgency_normal]
    timeout = 0
"""


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        message = f"{program} is not installed (apt-get install {_PACKAGES.get(program, program)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


_PACKAGES = {"dbus-daemon": "dbus", "dbus-monitor": "dbus", "dunst": "dunst",
             "trayer": "trayer", "xdotool": "xdotool"}


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


# A session bus without service directories: nothing is started on demand (the system's dunst
# would be, by D-Bus activation), so a test decides which services exist.
BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@contextmanager
def session_bus() -> Iterator[str]:
    """A private session bus; yields its address (for DBUS_SESSION_BUS_ADDRESS)."""
    import tempfile

    daemon = require("dbus-daemon")
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as config:
        config.write(BUS_CONFIG)
    process = subprocess.Popen(
        [daemon, f"--config-file={config.name}", "--nofork", "--nopidfile",
         "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = process.stdout.readline().strip()
        os.unlink(config.name)
        if not address:
            pytest.fail(f"dbus-daemon did not start: {process.stderr.read()}", pytrace=False)
        yield address
    finally:
        _end(process)


@contextmanager
def notification_daemon(display: str, bus: str, folder: Path) -> Iterator[subprocess.Popen]:
    """dunst owning org.freedesktop.Notifications on ``bus``, drawing on ``display``."""
    dunst = require("dunst")
    config = folder / "dunstrc"
    config.write_text(DUNSTRC)
    env = {**os.environ, "DISPLAY": display, "DBUS_SESSION_BUS_ADDRESS": bus}
    process = subprocess.Popen([dunst, "-config", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for(lambda: _bus_has_name(bus, "org.freedesktop.Notifications")):
            pytest.fail("dunst did not take org.freedesktop.Notifications", pytrace=False)
        yield process
    finally:
        _end(process)


@contextmanager
def tray_host(display: str) -> Iterator[subprocess.Popen]:
    """trayer, the XEMBED system tray, on ``display``; ends with the block."""
    trayer = require("trayer")
    from chimera_tk.desktop.tray_host import xembed_tray_owner

    env = {**os.environ, "DISPLAY": display}
    process = subprocess.Popen(
        [trayer, "--edge", "top", "--align", "right", "--widthtype", "request", "--height",
         "32", "--transparent", "false", "--tint", "0x333333", "--SetDockType", "true"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for(lambda: xembed_tray_owner() is not None):
            pytest.fail("trayer did not take the system tray selection", pytrace=False)
        yield process
    finally:
        _end(process)
        wait_for(lambda: xembed_tray_owner() is None, timeout=5)


class BusMonitor:
    """dbus-monitor watching Notify calls on a bus; ``text()`` is everything it printed."""

    def __init__(self, bus: str, folder: Path) -> None:
        monitor = require("dbus-monitor")
        self._log = folder / "dbus-monitor.log"
        self._file = self._log.open("w")
        self._process = subprocess.Popen(
            [monitor, "--address", bus,
             "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"],
            stdout=self._file, stderr=subprocess.STDOUT)
        # dbus-monitor prints its own NameAcquired signal once it listens
        if not wait_for(lambda: "NameAcquired" in self.text() or "member=Hello" in self.text()):
            pytest.fail("dbus-monitor did not start", pytrace=False)

    def text(self) -> str:
        self._file.flush()
        return self._log.read_text(errors="replace")

    def notify_calls(self) -> int:
        return self.text().count("member=Notify")

    def close(self) -> None:
        _end(self._process)
        self._file.close()


def grab(window_id: int | None = None) -> Image.Image:
    """What the X server shows of a window (the whole screen by default), as an RGB image."""
    import Xlib.display
    import Xlib.X

    display = Xlib.display.Display()
    try:
        window = (display.create_resource_object("window", window_id) if window_id
                  else display.screen().root)
        geometry = window.get_geometry()
        raw = window.get_image(0, 0, geometry.width, geometry.height, Xlib.X.ZPixmap,
                               0xFFFFFFFF)
        return Image.frombytes("RGB", (geometry.width, geometry.height), raw.data, "raw",
                               "BGRX")
    finally:
        display.close()


def screenshot(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    grab().save(folder / name)
    return folder / name


def _bus_has_name(bus: str, name: str) -> bool:
    result = subprocess.run(
        ["dbus-send", f"--bus={bus}", "--print-reply", "--dest=org.freedesktop.DBus",
         "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
        capture_output=True, text=True, timeout=5)
    return "boolean true" in result.stdout


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
