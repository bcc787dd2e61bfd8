"""Procedural Multi-dSprites (DeepMind's ``colored_on_colored`` and ``colored_on_grayscale``): latents, colours,
painting, `generate`.

An image has a background colour and a uniform number of sprites (`VARIANTS`: 1 to 4 on a colour background in
``colored_on_colored``, the default; 2 to 5 on a grey background in ``colored_on_grayscale``), each a uniformly random
dSprites sprite (shape, scale, orientation, x, y uniform over the dSprites grids of `sprites`) in a random colour,
painted in order so that later sprites cover earlier ones. The instance label map is 0 for the background and
1 ... n for the sprites in paint order; a pixel belongs to the sprite on top. The entity axis of a split's arrays
holds the variant's most entities (5 and 6, DeepMind's MAX_NUM_ENTITIES).

Randomness is counter-based: word j of image i of (seed, split) is SplitMix64's output at counter i * 32 + j + 1
from a key derived from (seed, split). Image i is therefore a pure function of (seed, split, i): a prefix of a split
equals the first images of the whole split, any range can be generated on its own, and every step is a vectorised
NumPy operation over a chunk of images. An integer in [0, n) is floor(w * n / 2^64) for a 64-bit word w (Lemire's
multiply-shift, computed exactly from w's two 32-bit halves; the bias is below n / 2^64).

Colour laws (`COLOUR_LAWS`), for the background and each sprite independently:

* ``"genesis125"`` (default): uniform over the 125 colours {0, 63, 127, 191, 255}^3, as GENESIS's public
  Multi-dSprites generator (applied-ai-lab/genesis ``scripts/generate_multid.py``), the only public recipe of this
  dataset family and the one the MONet baselines here are compared against.
* ``"uniform"``: uniform over all 2^24 8-bit RGB colours, closer to DeepMind's ``colored_on_colored`` ("all colours
  random RGB"; their files store uint8 images).
* ``"hsv"`` (``colored_on_grayscale``'s, and only there): each sprite's hue, saturation and value uniform on [0, 1)
  (21 bits each of one random word), converted to RGB and rounded to 8 bits; the background is grey, one level
  uniform over 0 ... 255 in all three channels. DeepMind's files say "HSV-coloured sprites on a random grey
  background" and no more (spec section 3.1): the uniform ranges are our reading, and a sprite of low saturation
  can look grey, or near the background's level.

Colours may repeat within an image, so a sprite can share the background's colour and be invisible (probability
1/125 per sprite under genesis125) while its label region is still there, as in GENESIS and its README's warning.
``unique_colours=True`` draws each sprite's colour uniformly from the colours not yet used in the image (background
included), which is the distribution of GENESIS's ``unique=True`` rejection loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from datasets.multi_dsprites import sprites

GENERATOR_VERSION = 1  # bump when any generated array changes: cache files of other versions are then regenerated
IMAGE_SIZE = sprites.IMAGE_SIZE
MAX_SPRITES = 4  # colored_on_colored's (the default variant's)
MAX_ENTITIES = MAX_SPRITES + 1  # DeepMind's MAX_NUM_ENTITIES for colored_on_colored: background + 4 sprites
SPLITS = ("train", "valid", "test")
SPLIT_SIZES = {"train": 60_000, "valid": 1_000, "test": 1_000}
DEFAULT_SEED = 0
COLOUR_LAWS = ("genesis125", "uniform", "hsv")
GENESIS_LEVELS = np.array([0, 63, 127, 191, 255], np.uint8)
LATENTS = ("shape", "scale", "orientation", "x", "y")  # column order of `EncodedSplit.latents`
CHUNK = 2048  # images per vectorised step: keeps the [chunk, 32, 32] float64 temporaries near 16 MB


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a DeepMind variant fixes: the sprite counts it allows, its default count range and colour laws."""

    max_sprites: int  # the most sprites an image can hold: the entity axis is 1 + max_sprites wide
    default_sprites: tuple[int, int]  # (min_sprites, max_sprites) when not given
    colour_laws: tuple[str, ...]  # the laws it takes; the first is its default

    @property
    def max_entities(self) -> int:
        return self.max_sprites + 1


VARIANTS = {
    "colored_on_colored": Variant(4, (1, 4), ("genesis125", "uniform")),  # colour background and sprites
    "colored_on_grayscale": Variant(5, (2, 5), ("hsv",)),  # grey background, HSV-coloured sprites
}

_SPLIT_IDS = {"train": 1, "valid": 2, "test": 3}
_WORDS_PER_IMAGE = 32  # counter stride: 1 count + 1 background colour + 5 sprites x 6 words
_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (2^64 / golden ratio)


@dataclasses.dataclass(frozen=True)
class Options:
    """What a split's images depend on besides (seed, split, index); stored in and checked against cache files.

    Attributes:
        colours: one of `COLOUR_LAWS` the variant takes (None: its default, genesis125 or hsv).
        unique_colours: sprites never share a colour with the background or an earlier sprite (default False, the
            GENESIS default; colored_on_colored only).
        min_sprites, max_sprites: the sprite count is uniform over [min_sprites, max_sprites] (None: the variant's
            range, 1 ... 4 or 2 ... 5), 1 <= min <= max <= the variant's most.
        variant: one of `VARIANTS`.
    """

    colours: str | None = None
    unique_colours: bool = False
    min_sprites: int | None = None
    max_sprites: int | None = None
    variant: str = "colored_on_colored"

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown Multi-dSprites variant {self.variant!r}; expected one of {tuple(VARIANTS)}")
        v = VARIANTS[self.variant]
        defaults = {"colours": v.colour_laws[0], "min_sprites": v.default_sprites[0],
                    "max_sprites": v.default_sprites[1]}
        for name, value in defaults.items():  # None -> the variant's default (frozen: set through object)
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.colours not in v.colour_laws:
            raise ValueError(f"colour law {self.colours!r} does not fit the variant {self.variant}; expected one of "
                             f"{v.colour_laws}")
        if not isinstance(self.unique_colours, bool):
            raise TypeError(f"unique_colours must be a bool, got {self.unique_colours!r}")
        if self.unique_colours and self.colours == "hsv":
            raise ValueError("unique_colours needs a discrete colour law (genesis125 or uniform), not 'hsv'")
        counts = (self.min_sprites, self.max_sprites)
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts) or not (
            1 <= self.min_sprites <= self.max_sprites <= v.max_sprites
        ):
            raise ValueError(f"need integers 1 <= min_sprites <= max_sprites <= {v.max_sprites} ({self.variant}), "
                             f"got {counts}")

    @property
    def max_entities(self) -> int:
        """The width of the entity axis: the variant's most sprites + the background."""
        return VARIANTS[self.variant].max_entities

    def record(self) -> dict:
        """The options as stored in cache headers. colored_on_colored leaves the variant out, so files written
        before variants existed keep their names and headers."""
        fields = dataclasses.asdict(self)
        if self.variant == "colored_on_colored":
            del fields["variant"]
        return fields


DEFAULT_OPTIONS = Options()


@dataclasses.dataclass(frozen=True)
class MultiDSpritesSplit:
    """Images, labels and generative factors of a Multi-dSprites split (entity axis e: 0 = background).

    Attributes:
        images: float32 `[n, 64, 64, 3]` in [0, 1] (exactly uint8 / 255).
        masks: uint8 `[n, 64, 64]` instance labels, 0 = background, 1 ... num_sprites in paint order.
        num_entities: int32 `[n]` entities drawn, background included (1 + number of sprites; a sprite hidden by
            later sprites still counts, see `entity_masks`).
        visibility: uint8 `[n, e]` (e = 5, or 6 for colored_on_grayscale) 1 for the entities drawn (DeepMind's
            ``visibility``: non-null entities).
        shape: uint8 `[n, e]` dSprites shape code, 1 square, 2 ellipse, 3 heart; 0 for the background and unused.
        scale, orientation, x, y: float32 `[n, e]` the sprites' dSprites latent values (0 where unused).
        colours: float32 `[n, e, 3]` entity colours in [0, 1] (unused slots 0).
    """

    images: np.ndarray
    masks: np.ndarray
    num_entities: np.ndarray
    visibility: np.ndarray
    shape: np.ndarray
    scale: np.ndarray
    orientation: np.ndarray
    x: np.ndarray
    y: np.ndarray
    colours: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def entity_masks(self) -> np.ndarray:
        """uint8 `[n, e, 64, 64]` one-hot visible masks (0/1), e the variant's entities (5, or 6 for
        colored_on_grayscale): entity 0 = background, unused or fully covered sprites all zero. DeepMind's files hold
        the same with values 0/255 (see `deepmind.from_split`)."""
        entities = np.arange(self.visibility.shape[1], dtype=np.uint8)
        return (self.masks[:, None] == entities[None, :, None, None]).view(np.uint8)


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """A split in exact compact form, what the cache stores: ``images[i] = palette[i][labels[i]] / 255``.

    Attributes:
        labels: uint8 `[n, 64, 64]` instance labels.
        palette: uint8 `[n, e, 3]` RGB colour of each entity (background first; unused slots 0).
        num_sprites: uint8 `[n]`.
        latents: uint8 `[n, 4, 5]` per sprite slot the indices of `LATENTS` into the dSprites grids (unused 0).
    """

    labels: np.ndarray
    palette: np.ndarray
    num_sprites: np.ndarray
    latents: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, images: slice) -> EncodedSplit:
        """A range of images, e.g. ``encoded[:16]``."""
        if not isinstance(images, slice):
            raise TypeError(f"EncodedSplit takes a slice of images, got {images!r}")
        return EncodedSplit(*(a[images] for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The fields in order (not `dataclasses.astuple`, which deep-copies every array)."""
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def decode(self) -> MultiDSpritesSplit:
        """The float32 images and float latents (decoded in chunks: the only large allocation is the result)."""
        n = len(self)
        colour_values = np.arange(256, dtype=np.float32) / np.float32(255)  # float32(u8) / 255, as GENESIS
        images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
        # Gather whole RGB triples: viewed as 12-byte records, np.take moves one record per pixel, several times
        # faster than fancy indexing with a trailing axis.
        rgb = np.dtype((np.void, 12))
        pixels = images.view(rgb)[..., 0]  # [n, 64, 64] records sharing the images' memory
        entities = self.palette.shape[1]  # e: 5, or 6 for colored_on_grayscale
        for start in range(0, n, CHUNK):
            chunk = slice(start, min(start + CHUNK, n))
            palette = np.ascontiguousarray(colour_values[self.palette[chunk]]).view(rgb).reshape(-1)  # [c * e]
            index = np.arange(chunk.stop - start)[:, None, None] * entities + self.labels[chunk]  # [c, 64, 64]
            np.take(palette, index, out=pixels[chunk], mode="clip")  # "clip": unbuffered; indices are valid
        present = np.arange(entities)[None, :] <= self.num_sprites[:, None]  # [n, e], background always
        sprite_present = present[:, 1:]

        def factor(grid: np.ndarray, column: int) -> np.ndarray:  # [n, e] with the background slot 0
            values = np.where(sprite_present, grid[self.latents[:, :, column]], 0)
            return np.concatenate([np.zeros((n, 1)), values], 1).astype(np.float32)

        shape = np.where(sprite_present, self.latents[:, :, 0] + 1, 0).astype(np.uint8)
        return MultiDSpritesSplit(
            images=images,
            masks=self.labels,
            num_entities=(self.num_sprites.astype(np.int32) + 1),
            visibility=present.astype(np.uint8),
            shape=np.concatenate([np.zeros((n, 1), np.uint8), shape], 1),
            scale=factor(sprites.SCALES, 1),
            orientation=factor(sprites.ORIENTATIONS, 2),
            x=factor(sprites.POSITIONS, 3),
            y=factor(sprites.POSITIONS, 4),
            colours=np.where(present[:, :, None], colour_values[self.palette], np.float32(0)),
        )


def check_args(split: str, num_images: int | None, seed: int) -> int:
    """Validates the public arguments; returns the number of images asked for.

    Raises:
        ValueError: naming the bad value.
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if num_images is None:
        return SPLIT_SIZES[split]
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or not 1 <= num_images < 2**32:
        raise ValueError(f"num_images must be a positive integer (below 2**32), got {num_images!r}")
    return int(num_images)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (a bijection of uint64; wraps modulo 2^64 by design)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, split: str) -> np.ndarray:
    """uint64 `[1]`: the key of (seed, split); distinct pairs give unrelated streams."""
    z = _mix64(np.array([seed], np.uint64) * _GAMMA + np.uint64(0x6D756C7469647370))  # "multidsp"
    return _mix64(z + np.array([_SPLIT_IDS[split]], np.uint64) * _GAMMA)  # arrays wrap silently, scalars warn


def random_words(key: np.ndarray, first: int, stop: int) -> np.ndarray:
    """uint64 `[stop - first, 32]`: the random words of images first ... stop - 1 (SplitMix64 at those counters)."""
    counters = np.arange(first * _WORDS_PER_IMAGE, stop * _WORDS_PER_IMAGE, dtype=np.uint64) + np.uint64(1)
    return _mix64(key + counters * _GAMMA).reshape(stop - first, _WORDS_PER_IMAGE)


def uniform_int(words: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """int64: floor(words * n / 2^64), integers in [0, n) for n < 2^32, from uint64 words.

    The 96-bit product is split at bit 32 so every step fits uint64: w * n = high * n * 2^32 + low * n, hence
    floor(w * n / 2^64) = floor((high * n + floor(low * n / 2^32)) / 2^32), with both sums below 2^64.
    """
    n = np.asarray(n, np.uint64)
    high, low = words >> np.uint64(32), words & np.uint64(0xFFFFFFFF)
    return ((high * n + ((low * n) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)


def colour_count(law: str) -> int:
    return 125 if law == "genesis125" else 2**24


def hsv_rgb(words: np.ndarray) -> np.ndarray:
    """uint8 `[..., 3]`: the "hsv" law's colour of each uint64 word: hue, saturation and value uniform on [0, 1)
    from the word's bits 0-20, 21-41 and 42-62, converted to RGB (the standard hexcone formula) and rounded."""
    fields = [((words >> np.uint64(21 * i)) & np.uint64(2**21 - 1)).astype(np.float64) / 2**21 for i in range(3)]
    h, s, v = fields
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    sector = sector.astype(np.int64)  # 0 ... 5
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = np.take_along_axis(table, sector[None, ..., None], 0)[0]  # [..., 3] in [0, 1]
    return np.round(rgb * 255).astype(np.uint8)


def colour_rgb(law: str, index: np.ndarray) -> np.ndarray:
    """uint8 `[..., 3]`: the RGB colour of a colour index of `law`."""
    if law == "genesis125":
        digits = np.stack([index // 25, (index // 5) % 5, index % 5], -1)
        return GENESIS_LEVELS[digits]
    return np.stack([(index >> 16) & 255, (index >> 8) & 255, index & 255], -1).astype(np.uint8)


def draw_colour_indices(words: np.ndarray, options: Options) -> np.ndarray:
    """int64 `[b, e]`: colour indices of the background and the sprite slots (discrete laws).

    Args:
        words: uint64 `[b, e]` one random word per entity.
        options: the colour law and `unique_colours`.
    """
    total = colour_count(options.colours)
    if not options.unique_colours:
        return uniform_int(words, total)
    # Without replacement: entity e takes the u-th of the colours not used by entities 0 ... e - 1 (u uniform over
    # total - e values); stepping u over the used colours in ascending order maps it onto the full index range.
    indices = np.empty(words.shape, np.int64)
    for entity in range(words.shape[1]):
        value = uniform_int(words[:, entity], total - entity)
        for used in np.sort(indices[:, :entity], axis=1).T:
            value = value + (value >= used)
        indices[:, entity] = value
    return indices


def draw_latents(words: np.ndarray, options: Options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws every image's latents from its random words.

    Args:
        words: uint64 `[b, 32]` from `random_words`.
        options: colour law and sprite counts.

    Returns:
        (num_sprites int64 `[b]`, latents int64 `[b, e - 1, 5]` indices of `LATENTS`, palette uint8 `[b, e, 3]`),
        e = `options.max_entities`.
    """
    span = options.max_sprites - options.min_sprites + 1
    num_sprites = options.min_sprites + uniform_int(words[:, 0], span)
    grids = (sprites.SHAPE_NAMES, sprites.SCALES, sprites.ORIENTATIONS, sprites.POSITIONS, sprites.POSITIONS)
    grid_sizes = np.array([len(g) for g in grids])  # in `LATENTS` order
    slots = options.max_entities - 1
    sprite_words = words[:, 2 : 2 + 6 * slots].reshape(-1, slots, 6)  # [b, e - 1, 5 latents + colour]
    latents = uniform_int(sprite_words[:, :, :5], grid_sizes)
    colour_words = np.concatenate([words[:, 1:2], sprite_words[:, :, 5]], 1)  # [b, e], background first
    if options.colours == "hsv":  # colored_on_grayscale: a grey background, HSV sprites
        palette = hsv_rgb(colour_words)
        palette[:, 0] = uniform_int(words[:, 1], 256)[:, None]
    else:
        palette = colour_rgb(options.colours, draw_colour_indices(colour_words, options))
    palette[np.arange(slots + 1)[None, :] > num_sprites[:, None]] = 0  # unused slots: no colour
    return num_sprites, latents, palette


def paint(num_sprites: np.ndarray, latents: np.ndarray) -> np.ndarray:
    """uint8 `[b, 64, 64]`: instance labels, sprites painted in slot order (later ones on top).

    Args:
        num_sprites: int `[b]`.
        latents: int `[b, slots, 5]` indices of `LATENTS`.
    """
    labels = np.zeros((len(num_sprites), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    flat = labels.reshape(-1)  # a view: writing through flat indices paints `labels`
    span = np.arange(sprites.WINDOW)
    for slot in range(latents.shape[1]):
        images = np.flatnonzero(num_sprites > slot)
        if not images.size:
            break
        inside, top, left = sprites.render_windows(*latents[images, slot].T)
        corner = (images * IMAGE_SIZE + top) * IMAGE_SIZE + left  # [m] flat index of each window's first pixel
        window = corner[:, None, None] + (span[:, None] * IMAGE_SIZE + span[None, :])  # [m, 32, 32]
        flat[window[inside]] = slot + 1  # later slots overwrite: paint order is occlusion order
    return labels


def encode_range(split: str, first: int, stop: int, seed: int, options: Options) -> EncodedSplit:
    """Images first ... stop - 1 of (seed, split) in compact form (pure: any range, any order, any process)."""
    parts = []
    key = stream_key(seed, split)
    for start in range(first, stop, CHUNK):
        end = min(start + CHUNK, stop)
        num_sprites, latents, palette = draw_latents(random_words(key, start, end), options)
        latents[np.arange(latents.shape[1])[None, :] >= num_sprites[:, None]] = 0  # unused: canonical zeros
        labels = paint(num_sprites, latents)
        parts.append(EncodedSplit(labels, palette, num_sprites.astype(np.uint8), latents.astype(np.uint8)))
    return EncodedSplit(*(np.concatenate(arrays) for arrays in zip(*(p.arrays() for p in parts))))


def generate_encoded(
    split: str = "train",
    num_images: int | None = None,
    *,
    seed: int = DEFAULT_SEED,
    options: Options = DEFAULT_OPTIONS,
) -> EncodedSplit:
    """Like `generate`, but returns the compact `EncodedSplit` (no float32 images are materialised)."""
    count = check_args(split, num_images, seed)
    return encode_range(split, 0, count, int(seed), options)


def generate(
    split: str = "train",
    num_images: int | None = None,
    *,
    seed: int = DEFAULT_SEED,
    colours: str | None = None,
    unique_colours: bool = False,
    min_sprites: int | None = None,
    max_sprites: int | None = None,
    variant: str = "colored_on_colored",
) -> MultiDSpritesSplit:
    """Generates a Multi-dSprites split (no cache; see `load` for the cached version).

    Args:
        split: one of `SPLITS`; the splits are independent random streams of the same distribution.
        num_images: how many images; default `SPLIT_SIZES[split]` (60,000 / 1,000 / 1,000). Any count is allowed
            and a smaller count gives exactly the first images of a larger one.
        seed: a non-negative integer; with `split` it fixes every image.
        colours: colour law, one of `COLOUR_LAWS` the variant takes (see the module docstring); None: the variant's
            default (genesis125, or hsv for colored_on_grayscale).
        unique_colours: draw sprite colours without repetition within an image (default False, as GENESIS).
        min_sprites, max_sprites: range of the uniform sprite count (None: the variant's, 1 ... 4 or 2 ... 5).
        variant: "colored_on_colored" (default) or "colored_on_grayscale" (`VARIANTS`).

    Returns:
        A `MultiDSpritesSplit`, the same arrays on every call.

    Raises:
        ValueError: naming a bad argument.
    """
    options = Options(colours, unique_colours, min_sprites, max_sprites, variant)
    return generate_encoded(split, num_images, seed=seed, options=options).decode()
