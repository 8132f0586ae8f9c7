"""The tray icon's picture: Chimera's icon with the unread count drawn on it (pure; no display)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from PIL import Image, ImageDraw, ImageFont

MAX_SHOWN = 99
BADGE_FILL = (220, 38, 38, 255)  # red, readable on light and dark panels
BADGE_TEXT = (255, 255, 255, 255)


def badge_label(count: int) -> str:
    """What the badge says: nothing for 0, the number up to 99, then "99+"."""
    if count <= 0:
        return ""
    return str(count) if count <= MAX_SHOWN else f"{MAX_SHOWN}+"


@lru_cache(maxsize=1)
def base_icon() -> Image.Image:
    with resources.files("chimera_tk").joinpath("assets", "icon-64.png").open("rb") as file:
        return Image.open(file).convert("RGBA")


def render_badge(count: int, base: Image.Image | None = None) -> Image.Image:
    """A new RGBA image: ``base`` (Chimera's icon by default) with a red unread badge on top."""
    image = (base or base_icon()).convert("RGBA").copy()
    label = badge_label(count)
    if not label:
        return image
    width, height = image.size
    badge_h = max(8, round(height * 0.56))
    font = ImageFont.load_default(size=round(badge_h * 0.78))
    draw = ImageDraw.Draw(image)
    text_w = draw.textlength(label, font=font)
    badge_w = min(width, max(badge_h, round(text_w) + badge_h // 2))
    box = (width - badge_w, 0, width - 1, badge_h - 1)
    draw.rounded_rectangle(box, radius=badge_h // 2, fill=BADGE_FILL)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    draw.text(centre, label, font=font, fill=BADGE_TEXT, anchor="mm")
    return image
