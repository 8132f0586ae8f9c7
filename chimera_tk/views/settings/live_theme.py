"""Switching light/dark while the window is open.

sv-ttk restyles every ttk widget by itself. The classic Tk widgets (the message view's Text, its
tags, canvases) were coloured from a :class:`Palette` when they were built, so each colour they
hold that belongs to the old palette is swapped for the same role's colour in the new one. The
roles are tried in a fixed order per kind of option, because two roles may share a colour (light
text is the dark background).
"""

from __future__ import annotations

import dataclasses
import tkinter as tk
from collections.abc import Callable

from chimera_tk.views.theme import DARK, LIGHT, Palette, apply_theme

_BACKGROUND_ROLES = ("surface", "background", "bubble_out", "bubble_in", "sponsored", "accent")
_FOREGROUND_ROLES = ("text", "muted", "accent", "error", "lan", "telegram")
_BACKGROUND_OPTIONS = ("background", "selectbackground", "inactiveselectbackground",
                       "highlightbackground", "activebackground")
_FOREGROUND_OPTIONS = ("foreground", "insertbackground", "selectforeground",
                       "activeforeground", "highlightcolor")


def current_palette(widget: tk.Misc) -> Palette:
    """The palette of the theme the window uses now."""
    import sv_ttk

    return DARK if sv_ttk.get_theme(widget.nametowidget(".")) == "dark" else LIGHT


def switch_theme(root: tk.Tk, setting: str) -> Palette:
    """Apply ``setting`` (system, light or dark) to the running window; returns the palette."""
    old = current_palette(root)
    new = apply_theme(root, setting)
    if new != old:
        backgrounds = _colour_map(old, new, _BACKGROUND_ROLES)
        foregrounds = _colour_map(old, new, _FOREGROUND_ROLES)
        _recolour(root, backgrounds, foregrounds)
    return new


def _colour_map(old: Palette, new: Palette, roles: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for role in roles:
        mapping.setdefault(getattr(old, role).lower(), getattr(new, role))
    for field in dataclasses.fields(Palette):  # any other role, after the preferred ones
        value = getattr(old, field.name)
        if isinstance(value, str) and value.startswith("#"):
            mapping.setdefault(value.lower(), getattr(new, field.name))
    return mapping


def _recolour(root: tk.Misc, backgrounds: dict[str, str],
              foregrounds: dict[str, str]) -> None:
    # Walks Tcl path names, not Python widget objects: views may shadow tkinter's internals
    # (an attribute named ``_root``), which breaks ``winfo_children`` on them.
    call = root.tk.call
    paths = ["."]
    while paths:
        path = paths.pop()
        _swap_options(call, path, backgrounds, foregrounds)
        if call("winfo", "class", path) == "Text":
            for tag in root.tk.splitlist(call(path, "tag", "names")):
                _swap_tag(call, path, tag, backgrounds, foregrounds)
        paths.extend(str(child) for child in root.tk.splitlist(call("winfo", "children", path)))


def _swap_options(call: Callable[..., object], path: str, backgrounds: dict[str, str],
                  foregrounds: dict[str, str]) -> None:
    for options, mapping in ((_BACKGROUND_OPTIONS, backgrounds),
                             (_FOREGROUND_OPTIONS, foregrounds)):
        for option in options:
            try:
                value = str(call(path, "cget", f"-{option}")).lower()
            except tk.TclError:
                continue  # this kind of widget has no such option
            if value in mapping:
                call(path, "configure", f"-{option}", mapping[value])


def _swap_tag(call: Callable[..., object], path: str, tag: str, backgrounds: dict[str, str],
              foregrounds: dict[str, str]) -> None:
    for option, mapping in (("background", backgrounds), ("foreground", foregrounds),
                            ("selectbackground", backgrounds)):
        try:
            value = str(call(path, "tag", "cget", tag, f"-{option}")).lower()
        except tk.TclError:
            continue
        if value in mapping:
            call(path, "tag", "configure", tag, f"-{option}", mapping[value])
