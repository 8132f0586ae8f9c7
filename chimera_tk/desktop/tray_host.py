"""Is a system tray there to show our icon? (Xlib only; no pystray, no PIL.)"""

from __future__ import annotations

XEMBED_BACKENDS = ("xorg", "gtk")  # docked by an XEMBED tray host on the X screen


def tray_host_present(backend: str) -> bool:
    """Is something on the desktop showing a tray icon of ``backend`` right now? For XEMBED
    backends that is the owner of the screen's system tray selection; others are trusted."""
    if backend not in XEMBED_BACKENDS:
        return bool(backend)
    return xembed_tray_owner() is not None


def xembed_tray_owner() -> int | None:
    """The X window id owning ``_NET_SYSTEM_TRAY_S<screen>`` (a tray host), or None."""
    try:
        import Xlib.display
        import Xlib.X

        display = Xlib.display.Display()
    except Exception:
        return None
    try:
        atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
        owner = display.get_selection_owner(atom)
        return None if owner == Xlib.X.NONE else owner.id
    except Exception:
        return None
    finally:
        display.close()
