"""Multi-dSprites for the ablation, at the experiment's image size (`datasets.multi_dsprites`, 64 x 64 natively).

    data = load_split("test", 1000, image_size=16)   # {"images": float32 [1000, 16, 16, 3],
                                                     #  "masks": uint8 [1000, 16, 16]}

Smaller images are the 64 x 64 ones downsampled by f = 64 / image_size (CPU-sized runs; the paper's size is 64):
    "nearest"  image and labels both take the pixel at offset f // 2 of every f x f block (the pixel nearest its
               centre, as PIL's NEAREST): every pixel keeps an exact sprite or background colour, and its label.
    "area"     the image is the mean of every block (anti-aliased edges); labels as "nearest".
"""

from __future__ import annotations

import numpy as np

from datasets import multi_dsprites as md

NATIVE_SIZE = 64
MAX_SPRITES = 4  # scenes hold 1 to 4 sprites (DeepMind's colored_on_colored)
DOWNSAMPLING = ("nearest", "area")
VARIANTS = tuple(md.GENERATED_VARIANTS)  # colored_on_colored (1-4 sprites), colored_on_grayscale (2-5 on grey)


def most_sprites(variant: str) -> int:
    """The most sprites a scene of `variant` holds (4, or 5 for colored_on_grayscale).

    Raises:
        ValueError: an unknown variant, naming it.
    """
    if variant not in md.GENERATED_VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return md.GENERATED_VARIANTS[variant].max_sprites


def check_image_size(image_size: int) -> int:
    """`image_size` as an int: a power of two in [8, 64] (the MONet U-Net needs a power of two >= 8).

    Raises:
        ValueError: naming the bad size.
    """
    size = int(image_size)
    if size != image_size or size < 8 or size > NATIVE_SIZE or size & (size - 1):
        raise ValueError(f"image_size must be a power of two in [8, {NATIVE_SIZE}] (Multi-dSprites is "
                         f"{NATIVE_SIZE} x {NATIVE_SIZE}; smaller sizes are downsampled), got {image_size!r}")
    return size


def downsample(images: np.ndarray, masks: np.ndarray, image_size: int, method: str = "nearest"):
    """(images `[n, s, s, c]`, masks `[n, s, s]`) of 64 x 64 images `[n, 64, 64, c]` and label maps `[n, 64, 64]`.

    Raises:
        ValueError: an unknown method or a bad size.
    """
    if method not in DOWNSAMPLING:
        raise ValueError(f"downsample must be one of {DOWNSAMPLING}, got {method!r}")
    f = images.shape[1] // check_image_size(image_size)
    if f == 1:
        return images, masks
    centre = slice(f // 2, None, f)
    small_masks = np.ascontiguousarray(masks[:, centre, centre])
    if method == "nearest":
        return np.ascontiguousarray(images[:, centre, centre]), small_masks
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // f, f, w // f, f, c)
    return blocks.mean(axis=(2, 4), dtype=np.float64).astype(np.float32), small_masks


def load_split(split: str, num_images: int, image_size: int, method: str = "nearest",
               max_sprites: int = MAX_SPRITES, variant: str = "colored_on_colored") -> dict[str, np.ndarray]:
    """The first `num_images` of a Multi-dSprites split (0: the whole split) of scenes of up to `max_sprites`
    sprites (colored_on_colored: 1 to max_sprites, 4 is DeepMind's; colored_on_grayscale: 2 to max_sprites, 5 is
    DeepMind's; K = 1 + max_sprites slots fit every scene), downsampled to `image_size`.

    Generated on first use and then read from the verified cache (`datasets.multi_dsprites.load`).

    Returns:
        {"images": float32 `[n, s, s, 3]` in [0, 1], "masks": uint8 `[n, s, s]` (0 background, 1.. sprites)}.
    """
    least = md.GENERATED_VARIANTS[variant].default_sprites[0]  # 1, or 2 on grey
    data = md.load(split, int(num_images) or None, min_sprites=min(least, int(max_sprites)),
                   max_sprites=int(max_sprites), variant=variant)
    images, masks = downsample(data.images, data.masks, image_size, method)
    return {"images": images, "masks": masks}
