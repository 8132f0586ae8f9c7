"""Draw Chimera's icon (a speech bubble split into LAN green and Telegram blue) with Pillow.

    python assets/make_icons.py             # assets/chimera-256.png, chimera_tk/assets/icon-64.png
    python assets/make_icons.py OUT_FOLDER  # also chimera.ico, chimera.icns, chimera-256.png there

The PNGs are the sources kept in git; the .ico (Windows) and .icns (macOS) are made from the same
drawing at build time by scripts/build-exe, so they never drift from it.
"""

import sys
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
GREEN, BLUE, WHITE = (15, 123, 15, 255), (42, 127, 212, 255), (255, 255, 255, 255)


def draw(size: int) -> Image.Image:
    scale = size / 256
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    mask = Image.new("L", (size, size), 0)
    shape = ImageDraw.Draw(mask)
    shape.rounded_rectangle([16 * scale, 24 * scale, 240 * scale, 196 * scale],
                            radius=44 * scale, fill=255)
    shape.polygon([(60 * scale, 180 * scale), (52 * scale, 244 * scale),
                   (120 * scale, 190 * scale)], fill=255)
    halves = Image.new("RGBA", (size, size), BLUE)
    ImageDraw.Draw(halves).polygon([(0, 0), (size, 0), (0, size)], fill=GREEN)
    image.paste(halves, (0, 0), mask)
    dots = ImageDraw.Draw(image)
    for x in (80, 128, 176):
        r = 14 * scale
        dots.ellipse([x * scale - r, 110 * scale - r, x * scale + r, 110 * scale + r], fill=WHITE)
    return image


def write_platform_icons(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    big = draw(1024)
    big.resize((256, 256), Image.LANCZOS).save(folder / "chimera-256.png")
    big.save(folder / "chimera.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64),
                                            (128, 128), (256, 256)])
    big.save(folder / "chimera.icns")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        write_platform_icons(Path(sys.argv[1]))
    else:
        draw(256).save(HERE / "chimera-256.png")
        draw(64).save(HERE.parent / "chimera_tk" / "assets" / "icon-64.png")
