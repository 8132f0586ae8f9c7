"""The Telegram side: Telethon in one thread with its own asyncio loop, and TL -> record mapping."""
