"""Preview sheets of the Good Gestalt datasets (Pillow only): train images | test images | test masks."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Mask label colours: background dark, then clearly distinct hues.
MASK_COLOURS = np.array(
    [[40, 40, 40], [228, 26, 28], [255, 217, 47], [55, 126, 184], [77, 175, 74], [152, 78, 163], [255, 127, 0]],
    np.uint8,
)


def mask_to_rgb(masks: np.ndarray) -> np.ndarray:
    """uint8 `[..., H, W]` labels -> uint8 `[..., H, W, 3]` colours."""
    return MASK_COLOURS[np.asarray(masks) % len(MASK_COLOURS)]


def grid(images: np.ndarray, columns: int = 4, scale: int = 2, gap: int = 2) -> Image.Image:
    """`[n, H, W, 3]` images (float in [0, 1] or uint8) -> one RGB sheet, `columns` wide, each tile `scale`d up."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    tile_h, tile_w = h * scale, w * scale
    sheet = Image.new("RGB", (columns * (tile_w + gap) + gap, rows * (tile_h + gap) + gap), (255, 255, 255))
    for i, image in enumerate(images):
        tile = Image.fromarray(image).resize((tile_w, tile_h), Image.NEAREST)
        sheet.paste(tile, (gap + (i % columns) * (tile_w + gap), gap + (i // columns) * (tile_h + gap)))
    return sheet


def sheet(title: str, panels: dict[str, np.ndarray], columns: int = 4) -> Image.Image:
    """Panels of image grids side by side, each with a caption, under a title."""
    grids = {caption: grid(images, columns) for caption, images in panels.items()}
    pad, header = 10, 44
    width = sum(g.width for g in grids.values()) + pad * (len(grids) + 1)
    height = max(g.height for g in grids.values()) + header + pad
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=16)
    draw.text((pad, 4), title, fill=(0, 0, 0), font=font)
    x = pad
    for caption, g in grids.items():
        draw.text((x, header - 20), caption, fill=(0, 0, 0), font=font)
        out.paste(g, (x, header))
        x += g.width + pad
    return out


def preview(name: str, train, test, count: int = 16) -> Image.Image:
    """The preview sheet of one dataset from its train (may be None) and test `GestaltSplit`s."""
    panels = {} if train is None else {"train images": train.images[:count]}
    panels["test images (Gestalt)"] = test.images[:count]
    panels["test masks"] = mask_to_rgb(test.masks[:count])
    return sheet(f"Good Gestalt: {name}", panels)
