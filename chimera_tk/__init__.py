"""Chimera: a Telegram client and a serverless LAN messenger in one Tk desktop app."""

__version__ = "0.1.0"
APP_NAME = "Chimera"
