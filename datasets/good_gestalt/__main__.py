"""Writes the Good Gestalt datasets to a directory: ``python -m datasets.good_gestalt --name all --out DIR``.

Every split goes to ``DIR`` in the cache format (so ``load(..., cache_dir=DIR)`` reads it back; splits already there
and intact are kept), with a preview PNG per dataset: train images | test images | test masks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from datasets.good_gestalt import cache, core, preview


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datasets.good_gestalt", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="all", choices=("all", *core.NAMES), help="dataset (default: all six)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the cache directory)")
    parser.add_argument("--image-size", type=int, default=64, choices=core.IMAGE_SIZES)
    parser.add_argument("--splits", nargs="+", default=list(core.SPLITS), choices=core.SPLITS)
    parser.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")
    parser.add_argument("--force", action="store_true", help="regenerate splits that are already written")
    parser.add_argument("--no-preview", action="store_true")
    args = parser.parse_args(argv)

    out = cache.default_cache_dir() if args.out is None else args.out
    names = core.NAMES if args.name == "all" else (args.name,)
    start = time.perf_counter()
    for name in names:
        paths = {s: cache.cache_path(out, name, s, args.image_size) for s in args.splits}
        done = {} if args.force else {
            s: _read_if_intact(paths[s], cache.identity(name, s, args.image_size)) for s in args.splits}
        done = {s: e for s, e in done.items() if e is not None}
        todo = [s for s in args.splits if s not in done]
        if todo:
            encoded = core.encode_splits(
                name, {s: None for s in todo}, image_size=args.image_size, workers=args.workers, progress=True
            )
            for split, e in encoded.items():
                cache.save(e, paths[split], cache.identity(name, split, args.image_size))
            done.update(encoded)
        if not args.no_preview and "test" in done:
            panels = {s: done[s][:16].decode() for s in ("train", "test") if s in done}
            picture = out / f"{name}_{args.image_size}px_preview.png"
            preview.preview(name, panels.get("train"), panels["test"]).save(picture)
            print(f"{name}: preview {picture}")
    print(f"wrote {len(names)} dataset(s) x {len(args.splits)} split(s) to {out} in {time.perf_counter() - start:.1f}s")


def _read_if_intact(path: Path, identity: dict) -> core.EncodedSplit | None:
    if not path.exists():
        return None
    try:
        return cache.read(path, identity)
    except cache.CorruptCacheError:
        return None


if __name__ == "__main__":
    main()
