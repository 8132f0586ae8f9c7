"""Tk views: frames with one lifecycle each, the theme, and pure formatting helpers."""
