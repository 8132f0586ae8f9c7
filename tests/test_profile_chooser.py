"""Choosing a profile at start: asked only when several exist and --profile was not given."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chimera_tk.errors import ConfigError
from chimera_tk.profiles import ProfileLock, profile_in_use, profile_paths
from chimera_tk.views.profile_chooser import (
    ProfileChoice,
    check_new_name,
    last_used,
    needs_choice,
    ordered,
    remember_last_used,
)


def test_the_chooser_is_shown_only_for_several_profiles_and_no_flag() -> None:
    assert needs_choice(["home", "work"], explicit=False)
    assert not needs_choice(["home", "work"], explicit=True)
    assert not needs_choice(["home"], explicit=False)
    assert not needs_choice([], explicit=False)


def test_last_used_comes_first_then_by_name(tmp_path: Path) -> None:
    choices = [ProfileChoice("b", False), ProfileChoice("Work", False), ProfileChoice("a", True)]
    assert [c.name for c in ordered(choices, "Work")] == ["Work", "a", "b"]
    assert last_used(tmp_path) is None
    remember_last_used(tmp_path, "Work")
    assert last_used(tmp_path) == "Work"
    (tmp_path / "last_profile").write_text("../../etc")
    assert last_used(tmp_path) is None  # a damaged file is ignored, never used as a path


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "x" * 65, "work", "WORK"])
def test_bad_or_taken_new_names_are_refused_with_a_sentence(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_new_name(name, ["work"])
    assert str(caught.value)


def test_a_locked_profile_is_reported_in_use(tmp_path: Path) -> None:
    paths = profile_paths("busy", tmp_path).ensure()
    assert not profile_in_use(paths)
    lock = ProfileLock(paths).acquire()
    try:
        assert profile_in_use(paths)
    finally:
        lock.release()
    assert not profile_in_use(paths)


@pytest.mark.gui
def test_the_chooser_widget_opens_the_selection_and_refuses_an_open_profile(
        x_display: str) -> None:
    import tkinter as tk

    from chimera_tk.views.profile_chooser import ProfileChooser

    root = tk.Tk()
    picked: list[str | None] = []
    try:
        chooser = ProfileChooser(root, [ProfileChoice("busy", True), ProfileChoice("home", False)],
                                 picked.append)
        root.update()
        assert chooser.listbox.curselection() == (1,)  # the first profile that can be opened
        chooser.listbox.selection_clear(0, "end")
        chooser.listbox.selection_set(0)
        chooser.open_selected()
        assert picked == [] and "already open" in chooser.error.cget("text")
        chooser.new_name.insert(0, "home")
        chooser.create()
        assert picked == [] and "already exists" in chooser.error.cget("text")
        chooser.new_name.delete(0, "end")
        chooser.new_name.insert(0, "travel")
        chooser.new_name.focus_force()
        root.update()
        chooser.new_name.event_generate("<Return>")
        root.update()
        assert picked == ["travel"]
        root.event_generate("<Escape>")
        root.update()
        assert picked == ["travel", None]
    finally:
        root.destroy()


def _xdotool(*args: str) -> str:
    return subprocess.run(["xdotool", *args], capture_output=True, text=True,
                          timeout=10).stdout.strip()


def _window(title: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        found = _xdotool("search", "--onlyvisible", "--name", f"^Chimera {title}$")
        if found:
            return found.splitlines()[0]
        time.sleep(0.1)
    raise AssertionError(f"no window titled {title!r}")


@pytest.mark.gui
def test_starting_without_a_profile_flag_asks_and_opens_the_chosen_one(
        x_display: str, tmp_path: Path) -> None:
    for name in ("home", "work"):
        profile_paths(name, tmp_path).ensure()
    remember_last_used(tmp_path, "work")
    env = dict(os.environ, DISPLAY=x_display)
    proc = subprocess.Popen([sys.executable, "-m", "chimera_tk", "--data-dir", str(tmp_path),
                             "--theme", "light"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        chooser = _window(".+ profiles", deadline)  # xdotool's regex does not match the em dash
        _xdotool("windowactivate", "--sync", chooser)
        _xdotool("windowfocus", "--sync", chooser)
        # plain XTEST key: "--window" may press by XTEST and release by XSendEvent to a window
        # that is gone by then, leaving Return held down (and auto-repeating) for later tests
        _xdotool("key", "Return")  # "work", the last used, is selected
        _window(".+ work", deadline)
        assert profile_in_use(profile_paths("work", tmp_path))
        assert not profile_in_use(profile_paths("home", tmp_path))
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert last_used(tmp_path) == "work"
