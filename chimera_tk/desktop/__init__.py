"""Chimera on the desktop: the tray icon with its unread badge, and new-message notifications.

Pure parts (badge drawing, the notify-or-not policy) sit beside the two workers that own a thread
each (pystray, and an asyncio loop for D-Bus notifications) and the Tk-side shell that wires them.
"""
