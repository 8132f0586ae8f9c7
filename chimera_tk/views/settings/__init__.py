"""The Settings window (every config value, validated) with the Certificate panel."""

from chimera_tk.views.settings.dialog import SettingsDialog

__all__ = ["SettingsDialog"]
