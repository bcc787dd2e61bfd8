"""Benchmark: Multi-dSprites generation, the verified cache, and DeepMind-format TFRecords, in images per second.

    python -m benchmarks.multi_dsprites                        # the whole train split (60,000 images)
    python -m benchmarks.multi_dsprites --num-images 10000 --tfrecord-images 500

Rows, each on the same images in a fresh temporary cache directory, single process:
  generate (compact)   `generate_encoded`: latents, rasterisation, painting (labels + palettes)
  decode to float32    `EncodedSplit.decode`: the [n, 64, 64, 3] float32 images `generate`/`load` return
  cache write          `cache.save`: digest + compressed npz, atomically
  cached load_encoded  read the npz, check header and SHA-256 digest (what every later `load` costs, minus decode)
  cached load          the same plus decode, i.e. `md.load(...)` on a warm cache
  TFRecord write/read  `write_tfrecord_examples` / `read_tfrecord` in DeepMind's colored_on_colored GZIP format
                       (pure NumPy CRC-32C and protobuf decoding; for converting DeepMind's files once)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from datasets import multi_dsprites as md
from datasets.multi_dsprites import cache


def timed(fn):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train", choices=md.SPLITS)
    parser.add_argument("--num-images", type=int, default=None, help="default: the split's size")
    parser.add_argument("--tfrecord-images", type=int, default=1000, help="images for the TFRecord rows")
    args = parser.parse_args()
    n = args.num_images or md.SPLIT_SIZES[args.split]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        encoded, seconds = timed(lambda: md.generate_encoded(args.split, n))
        rows.append(("generate (compact)", n, seconds))
        _, seconds = timed(encoded.decode)
        rows.append(("decode to float32", n, seconds))
        header = cache.header(args.split, n, md.DEFAULT_SEED, md.Options())
        path = cache.cache_path(tmp, args.split, n, md.DEFAULT_SEED, md.Options())
        _, seconds = timed(lambda: cache.save(encoded, path, header))
        rows.append(("cache write", n, seconds))
        size_mb = path.stat().st_size / 1e6
        _, seconds = timed(lambda: md.load_encoded(args.split, n, cache_dir=tmp))
        rows.append(("cached load_encoded", n, seconds))
        _, seconds = timed(lambda: md.load(args.split, n, cache_dir=tmp))
        rows.append(("cached load (decoded)", n, seconds))

        count = min(args.tfrecord_images, n)
        split = encoded[:count].decode()
        record_path = Path(tmp) / "colored_on_colored.tfrecords"
        arrays = md.from_split(split)
        _, seconds = timed(
            lambda: md.write_tfrecord_examples(record_path, "multi_dsprites", "colored_on_colored", *arrays)
        )
        rows.append(("TFRecord write (GZIP)", count, seconds))
        record_mb = record_path.stat().st_size / 1e6
        _, seconds = timed(lambda: md.read_tfrecord(record_path, "multi_dsprites", "colored_on_colored"))
        rows.append(("TFRecord read (GZIP)", count, seconds))

    print(f"\nMulti-dSprites, split {args.split!r}, {os.cpu_count()} cores (one process)")
    print(f"{'step':24s} {'images':>8s} {'seconds':>9s} {'images/s':>10s}")
    for label, count, seconds in rows:
        print(f"{label:24s} {count:8d} {seconds:9.2f} {count / seconds:10.0f}")
    print(f"cache file {size_mb:.1f} MB for {n} images; TFRecord {record_mb:.1f} MB for {count} images")


if __name__ == "__main__":
    main()
