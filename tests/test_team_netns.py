"""The whole story on a namespaced LAN: a team admin starts a CA, two people join by invite on
fresh profiles, then talk through `chimera send`/`--headless` and through two real windows.

Host c runs ``chimera-identity serve``; hosts a and b are Alice's and Bob's desktops. Both windows
share one Xvfb screen (side by side) and are driven with xdotool, as a person would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lan_nodes import AppNode
from tests.netns import Network, require_netns

pytestmark = [pytest.mark.netns, pytest.mark.gui]

ALICE, BOB = 1001, 2002
IDENTITY = [sys.executable, "-m", "chimera_tk.identity.cli"]
SCREENSHOTS = os.environ.get("CHIMERA_SCREENSHOT_DIR")


@pytest.fixture
def network() -> Iterator[Network]:
    require_netns()
    with Network(("a", "b", "c")) as net:
        yield net


@pytest.fixture
def wide_display() -> Iterator[str]:
    """A screen wide enough for two windows side by side."""
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0",
                             "2160x760x24", "-nolisten", "tcp"], pass_fds=(write_end,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        display = f":{pipe.readline().strip()}"
    yield display
    xvfb.terminate()
    xvfb.wait(timeout=10)


def _identity(*args: str) -> str:
    result = subprocess.run([*IDENTITY, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _join(node: AppNode, invite: str) -> None:
    deadline = time.monotonic() + 30
    while True:  # the provider may still be starting: "cannot reach" leaves the invite unused
        result = node.host.run(node.chimera("--new", "--invite", invite), check=False,
                               timeout=60)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        assert "cannot reach" in result.stderr, result.stderr
        time.sleep(0.3)
    assert result.returncode == 0, result.stderr
    assert f"as id {node.user_id}" in result.stdout


def _xdo(display: str, *args: str) -> str:
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "DISPLAY": display}, timeout=30).stdout.strip()


def _window(display: str, title: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--name", title], capture_output=True,
                               text=True, env={**os.environ, "DISPLAY": display}).stdout.split()
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no window titled {title!r}")


def _open_chat_and_type(display: str, window: str, search: str, text: str | None) -> None:
    _xdo(display, "windowfocus", "--sync", window)
    _xdo(display, "key", "ctrl+k")  # focused above; see test_profile_chooser on --window
    _xdo(display, "type", "--delay", "20", search)
    _xdo(display, "key", "Return")
    time.sleep(0.5)
    if text is not None:
        _xdo(display, "type", "--delay", "10", text)
        _xdo(display, "key", "Return")


def _screenshot(display: str, window: str, name: str) -> None:
    if SCREENSHOTS and shutil.which("import"):
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        subprocess.run(["import", "-window", window, str(Path(SCREENSHOTS) / f"{name}.png")],
                       env={**os.environ, "DISPLAY": display}, check=False, timeout=30)


def test_fresh_profiles_join_by_invite_and_talk_by_command_and_by_window(
        network: Network, tmp_path: Path, wide_display: str) -> None:
    ca_dir = tmp_path / "team-ca"
    provider = network["c"]
    _identity("init", "--dir", str(ca_dir), "--url", f"https://{provider.address}:8443",
              "--name", "Test Office")
    alice_invite = _identity("invite", "--dir", str(ca_dir), "--id", str(ALICE),
                             "--name", "Alice").strip().splitlines()[-1]
    bob_invite = _identity("invite", "--dir", str(ca_dir), "--id", str(BOB),
                           "--name", "Bob").strip().splitlines()[-1]
    provider.popen([*IDENTITY, "serve", "--dir", str(ca_dir), "--listen",
                    f"{provider.address}:8443"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    alice = AppNode(network["a"], tmp_path / "a", "alice", ALICE, ca=None)
    bob = AppNode(network["b"], tmp_path / "b", "bob", BOB, ca=None)
    (alice.paths.config_file).unlink()  # really fresh: only what --new writes
    (bob.paths.config_file).unlink()
    _join(alice, alice_invite)
    _join(bob, bob_invite)

    # -- by command: Bob listens headless, Alice sends a text and a file ------------------------
    bob.start_headless()
    sent = alice.send(BOB, "first message over the team's LAN")
    assert sent.returncode == 0, sent.stderr
    report = tmp_path / "report.pdf"
    report.write_bytes(os.urandom(2 << 20))
    sent = alice.send(BOB, "the report", file=report)
    assert sent.returncode == 0, sent.stderr
    received = [m for m in bob.export() if m["direction"] == "in"]
    assert [m["text"] for m in received] == ["first message over the team's LAN", "the report"]
    assert {m["sender_name"] for m in received} == {"Alice"}
    assert Path(received[1]["file"]["path"]).read_bytes() == report.read_bytes()
    assert bob.stop() == 0

    # -- by window: both apps open on one screen, Alice types, Bob's window shows it ------------
    env = network.env(DISPLAY=wide_display)
    bob.process = bob.host.popen(bob.chimera("-v", "--theme", "light"), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    alice.process = alice.host.popen(alice.chimera("-v", "--theme", "light"), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    alice_window = _window(wide_display, "Chimera.*alice")
    bob_window = _window(wide_display, "Chimera.*bob")
    _xdo(wide_display, "windowmove", bob_window, "1100", "0")
    alice.wait_for_log(f"user {BOB} verified on the LAN")
    bob.wait_for_log(f"user {ALICE} verified on the LAN")
    time.sleep(1.0)  # the dialog lists refresh (60 ms after the event) before anyone types
    _open_chat_and_type(wide_display, alice_window, "Bob", "typed in Alice's window")
    deadline = time.monotonic() + 20
    typed = []
    while time.monotonic() < deadline and not typed:
        typed = [m for m in alice.export() if m["text"] == "typed in Alice's window"]
        time.sleep(0.2)
    assert typed and typed[0]["route"] == "lan" and typed[0]["dialog"] == BOB
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and typed[0]["state"] != "delivered":
        typed = [m for m in alice.export() if m["text"] == "typed in Alice's window"]
        time.sleep(0.2)
    assert typed[0]["state"] == "delivered"
    _open_chat_and_type(wide_display, bob_window, "Alice", None)
    bob.wait_for_log(typed[0]["uid"])  # Bob's chat view drew that very message
    _screenshot(wide_display, "root", "two-windows")
    _screenshot(wide_display, alice_window, "alice-window")
    _screenshot(wide_display, bob_window, "bob-window")
    for node in (alice, bob):
        assert node.stop() == 0
