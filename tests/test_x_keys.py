"""The suite's guard against keys left held down on the shared X server (see conftest)."""

from __future__ import annotations

import pytest

from tests.conftest import _release_held_keys


@pytest.mark.gui
def test_a_key_left_down_is_released_before_the_next_test(x_display: str) -> None:
    from Xlib import XK, X, display
    from Xlib.ext import xtest

    screen = display.Display(x_display)
    try:
        keycode = screen.keysym_to_keycode(XK.string_to_keysym("Return"))
        xtest.fake_input(screen, X.KeyPress, keycode)
        screen.sync()
        assert screen.query_keymap()[keycode // 8] & (1 << (keycode % 8))
        _release_held_keys()
        assert not any(screen.query_keymap())
    finally:
        screen.close()
