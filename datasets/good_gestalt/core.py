"""The Good Gestalt generation engine: parameter streams, parallel rendering, the compact encoding, `generate`.

Generation has two stages. First the parameters of every image are drawn *in order* from the reference's random
streams (``default_rng(42)`` for train/valid/test_iid, ``default_rng(41)`` for test); this is cheap, and it is the
only sequential part. Then images are rendered from their parameters, which is pure, so it runs in parallel over
processes without changing a pixel. Valid and test_iid come after the 30,000 train images in their stream: their
predecessors' parameters are drawn and dropped, never rendered.

Images are held in an exact compact form (`EncodedSplit`): a uint8 colour-index map per image plus a small float32
palette per image; ``palette[index]`` is the float32 image. Every GG image has few distinct colours (at most 32 at
64 px, Gradient Occlusion's gradient columns included), so this is ~12x smaller than float32 images before zip
compression and is what the on-disk cache stores.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import sys
import warnings
from types import ModuleType

import numpy as np

from datasets.good_gestalt import (
    closure,
    continuity,
    gradient_occlusion,
    illusory_occlusion,
    kanizsa,
    proximity,
)

GENERATORS: dict[str, ModuleType] = {
    "kanizsa": kanizsa,
    "closure": closure,
    "continuity": continuity,
    "proximity": proximity,
    "gradient_occlusion": gradient_occlusion,
    "illusory_occlusion": illusory_occlusion,
}
NAMES = tuple(GENERATORS)
SPLITS = ("train", "valid", "test_iid", "test")
SPLIT_SIZES = {"train": 30_000, "valid": 300, "test_iid": 100, "test": 100}
IMAGE_SIZES = (64, 256)
IID_SEED = 42  # the train / valid / test_iid stream
TEST_SEED = 41  # the Gestalt test stream
# The reference's "colour trick": train images x 999/1000 and valid images x 998/1000 (in float64, multiply first),
# so that no pixel value other than 0 is shared between splits.
SPLIT_SCALE = {"train": 999, "valid": 998}
PARALLEL_MIN_IMAGES = 2048  # below this, rendering in-process beats starting worker processes
CHUNK = 1024  # images per rendering task


@dataclasses.dataclass(frozen=True)
class GestaltSplit:
    """One split of a Good Gestalt dataset.

    Attributes:
        images: float32 `[n, H, W, 3]`, values in [0, 1].
        masks: uint8 `[n, H, W]`, 0 = background; None for train and valid (the reference has none).
        detailed_masks: uint8 `[n, H, W]` part labels, or None where the reference has none.
        num_clusters: int32 `[n]`, the number of distinct mask labels including background (the k that LNS
            clusters into), or None without masks.
    """

    images: np.ndarray
    masks: np.ndarray | None
    detailed_masks: np.ndarray | None
    num_clusters: np.ndarray | None

    def __len__(self) -> int:
        return len(self.images)


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """A split in exact compact form: ``images[i] = palette[i][index[i]]``.

    Attributes:
        index: uint8 `[n, H, W]` colour index per pixel.
        palette: float32 `[n, P, 3]` colour per index, split scaling applied.
        masks, detailed_masks: as in `GestaltSplit`.
    """

    index: np.ndarray
    palette: np.ndarray
    masks: np.ndarray | None
    detailed_masks: np.ndarray | None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, images: slice) -> "EncodedSplit":
        """A range of images, e.g. ``encoded[:16]``."""
        if not isinstance(images, slice):
            raise TypeError(f"EncodedSplit takes a slice of images, got {images!r}")
        return EncodedSplit(*(None if a is None else a[images] for a in dataclasses.astuple(self)))

    def decode(self) -> GestaltSplit:
        """The float32 images (decoded in chunks, so the only large allocation is the result)."""
        n, height, width = self.index.shape
        images = np.empty((n, height, width, 3), np.float32)
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            rows = np.arange(start, stop)[:, None, None]
            images[start:stop] = self.palette[rows, self.index[start:stop]]
        return GestaltSplit(images, self.masks, self.detailed_masks, num_clusters(self.masks))


def num_clusters(masks: np.ndarray | None) -> np.ndarray | None:
    """int32 `[n]`: distinct labels per mask, background included (None for None)."""
    if masks is None:
        return None
    return np.array([np.count_nonzero(np.bincount(m.ravel())) for m in masks], np.int32)


def check_args(name: str, split: str, image_size: int = 64, limit: int | None = None) -> int:
    """Validates the public arguments; returns the number of images asked for.

    Raises:
        ValueError: naming the bad value.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown Good Gestalt dataset {name!r}; expected one of {NAMES}")
    if split not in SPLIT_SIZES:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    # An integer, not merely equal to one: 64.0 == 64, but a float size would reach the array slicing.
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be an integer in {IMAGE_SIZES}, got {image_size!r}")
    size = SPLIT_SIZES[split]
    if limit is None:
        return size
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or not 1 <= limit <= size:
        raise ValueError(f"limit must be an integer in [1, {size}] for split {split!r}, got {limit!r}")
    return int(limit)


def _stream_range(split: str, count: int) -> tuple[int, int, int]:
    """(seed, first, stop): where the split's first `count` images sit in their random stream."""
    if split == "test":
        return TEST_SEED, 0, count
    first = {"train": 0, "valid": SPLIT_SIZES["train"], "test_iid": SPLIT_SIZES["train"] + SPLIT_SIZES["valid"]}
    return IID_SEED, first[split], first[split] + count


def draw_params(name: str, requests: dict[str, int]) -> dict[str, list]:
    """Draws the parameters of the first `count` images of each requested split, each stream drawn once.

    Args:
        name: a dataset name.
        requests: {split: count}.

    Returns:
        {split: list of per-image parameter records}, in image order.
    """
    module = GENERATORS[name]
    out = {}
    for seed, draw in ((IID_SEED, module.draw_iid), (TEST_SEED, module.draw_test)):
        ranges = {s: _stream_range(s, c)[1:] for s, c in requests.items() if _stream_range(s, c)[0] == seed}
        if not ranges:
            continue
        rng = np.random.default_rng(seed)
        stream = [draw(rng) for _ in range(max(stop for _, stop in ranges.values()))]
        out.update({s: stream[first:stop] for s, (first, stop) in ranges.items()})
    return out


def _resample(x: np.ndarray, native: int, size: int) -> np.ndarray:
    """`[..., native, native]` -> `[..., size, size]`: strided subsampling down (the reference's ``[::4, ::4]``, no
    averaging) or pixel repetition up (its high-resolution mode for the 64-native datasets)."""
    if native == size:
        return x
    if native > size:
        step = native // size
        return np.ascontiguousarray(x[..., ::step, ::step])
    factor = size // native
    return x.repeat(factor, -2).repeat(factor, -1)


def _render_chunk(name: str, split: str, image_size: int, params: list) -> EncodedSplit:
    """Renders consecutive images of one split into the compact form (runs in worker processes)."""
    module = GENERATORS[name]
    with_masks = split in ("test_iid", "test")
    with_detailed = split in module.DETAILED
    layers = [module.render(p, with_masks) for p in params]
    index = _resample(np.stack([lay.index for lay in layers]), module.NATIVE_SIZE, image_size)
    palette = np.stack([lay.palette for lay in layers])  # float64, as the reference computes
    if split in SPLIT_SCALE:
        palette = palette * SPLIT_SCALE[split] / 1000
    masks = detailed = None
    if with_masks:
        masks = _resample(np.stack([lay.mask for lay in layers]), module.NATIVE_SIZE, image_size)
    if with_detailed:
        detailed = _resample(np.stack([lay.detailed_mask for lay in layers]), module.NATIVE_SIZE, image_size)
    return EncodedSplit(index, palette.astype(np.float32), masks, detailed)


def _concat(parts: list[EncodedSplit]) -> EncodedSplit:
    def cat(field):
        arrays = [getattr(p, field) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays)

    return EncodedSplit(*(cat(f.name) for f in dataclasses.fields(EncodedSplit)))


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def encode_splits(
    name: str,
    splits: dict[str, int],
    *,
    image_size: int = 64,
    workers: int | None = None,
    progress: bool | None = False,
) -> dict[str, EncodedSplit]:
    """Renders the first `count` images of each split of one dataset into the compact form.

    Args:
        name: a dataset name.
        splits: {split: count}; counts are checked like `limit`.
        image_size: 64 (default, the paper's) or 256 (the reference's high-resolution variant).
        workers: rendering processes; default: the usable cores. Small jobs render in-process.
        progress: show a progress bar (None: only on a terminal).

    Returns:
        {split: EncodedSplit}.
    """
    counts = {s: check_args(name, s, image_size, c) for s, c in splits.items()}
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    params = draw_params(name, counts)
    tasks = [(s, params[s][i:i + CHUNK]) for s in counts for i in range(0, counts[s], CHUNK)]
    total = sum(counts.values())

    results = None
    if workers > 1 and total >= PARALLEL_MIN_IMAGES and _can_fork():
        try:
            results = _render_parallel(name, image_size, tasks, workers, progress)
        except concurrent.futures.process.BrokenProcessPool as e:
            warnings.warn(f"parallel rendering failed ({e}); rendering in this process instead", stacklevel=2)
    if results is None:
        with _progress_bar(name, image_size, total, progress) as bar:
            results = []
            for split, chunk in tasks:
                results.append(_render_chunk(name, split, image_size, chunk))
                bar.update(len(chunk))
    by_split = {s: [r for (split, _), r in zip(tasks, results) if split == s] for s in counts}
    return {s: _concat(parts) for s, parts in by_split.items()}


def _can_fork() -> bool:
    """Rendering runs in forked worker processes: fast to start and safe from any script (spawn would re-import
    the caller's main module). Forking a process with JAX loaded (multithreaded) can deadlock, so then rendering
    stays in-process (it takes ~15 s for all six datasets on one core)."""
    return "fork" in multiprocessing.get_all_start_methods() and "jax" not in sys.modules


def _progress_bar(name: str, image_size: int, total: int, progress: bool | None):
    from tqdm.auto import tqdm  # imported here: only long jobs show a bar

    return tqdm(total=total, desc=f"{name} ({image_size}px)", unit="img", disable=(progress is False) or None)


def _render_parallel(name, image_size, tasks, workers, progress) -> list[EncodedSplit]:
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
        # Submit (which starts the workers) before the progress bar starts its monitor thread.
        futures = [pool.submit(_render_chunk, name, split, image_size, chunk) for split, chunk in tasks]
        with _progress_bar(name, image_size, sum(len(c) for _, c in tasks), progress) as bar:
            results = []
            for future, (_, chunk) in zip(futures, tasks):
                results.append(future.result())
                bar.update(len(chunk))
    return results


def generate(name: str, split: str, *, image_size: int = 64, limit: int | None = None) -> GestaltSplit:
    """Generates a split of a Good Gestalt dataset exactly as the reference generator does.

    With the default sizes (train 30,000, valid 300, test_iid 100, test 100) the arrays equal the reference's:
    images after casting its float64 to float32, masks exactly. The reference's mask-shape bugs are fixed: masks
    are always `[n, H, W]` at full size. Closure's 1 px outline shift in half of its test images is reproduced
    (see `datasets.good_gestalt.closure`).

    Args:
        name: one of `NAMES`.
        split: one of `SPLITS`: "train", "valid", "test_iid" (in-distribution, the reference's ``test_1``) or
            "test" (the out-of-distribution Gestalt set the paper evaluates on).
        image_size: 64 (the paper's) or 256 (the reference's high-resolution variant).
        limit: return only the first `limit` images of the split (a prefix: the same images as without it).

    Returns:
        A `GestaltSplit`; images float32 `[n, H, W, 3]`.

    Raises:
        ValueError: unknown name or split, unsupported image_size, or limit outside [1, split size].
    """
    count = check_args(name, split, image_size, limit)
    return encode_splits(name, {split: count}, image_size=image_size)[split].decode()
