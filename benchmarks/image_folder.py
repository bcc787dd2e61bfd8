"""Benchmark: `datasets.images.load_folder` on a folder of JPEGs, cold (decoding every file and writing the cache)
and warm (reading the cache), with the peak memory of each.

    python -m benchmarks.image_folder                           # 30,000 JPEGs of 178 x 218 (CelebA's), 64 px
    python -m benchmarks.image_folder --num-images 300          # a quick check
    python -m benchmarks.image_folder --workdir /fast/disk      # where the JPEGs and the cache go (default: a temp dir)

The folder is written first (random-ish JPEGs: a few hundred variants of smooth-noise templates, so the decoder and
the cache's compression see varied content; the writing time is printed apart). Each phase then runs in a fresh
subprocess, whose ``ru_maxrss`` is its peak resident memory, imports included; a subprocess that only imports gives
the baseline. The memory floor of a phase is the uint8 pixels plus the float32 images returned (5x the uint8).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

VARIANTS = 256  # distinct JPEGs; files cycle through them (256 x 64 px images: more than zlib's 32 KB window)

PHASE = """
import json, resource, sys, time
root, cache_dir, image_size, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from datasets.images import load_folder
start, count = time.perf_counter(), 0
if phase != "imports":
    count = len(load_folder(root, "all", image_size=image_size, cache_dir=cache_dir))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"seconds": time.perf_counter() - start, "images": count, "peak_rss": peak}))
"""


def write_folder(folder: Path, num_images: int, width: int, height: int, seed: int = 0) -> None:
    """`num_images` JPEGs (quality 90) in `folder`, in subfolders of 1,000, cycling through `VARIANTS` encodings."""
    rng = np.random.default_rng(seed)
    blobs = []
    for v in range(min(VARIANTS, num_images)):
        coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
        pixels = np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)
        encoded = io.BytesIO()
        Image.fromarray(pixels).save(encoded, format="JPEG", quality=90)
        blobs.append(encoded.getvalue())
    for i in range(num_images):
        sub = folder / f"{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"{i:06d}.jpg").write_bytes(blobs[i % len(blobs)])


def run_phase(phase: str, folder: Path, cache_dir: Path, image_size: int) -> dict:
    """One phase in a fresh interpreter: {"seconds", "images", "peak_rss"} and the subprocess's wall time."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", PHASE, str(folder), str(cache_dir), str(image_size), phase]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"phase {phase!r} failed:\n{done.stderr[-3000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "wall": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=30_000)
    parser.add_argument("--size", default="178x218", help="JPEG width x height (default CelebA's aligned 178x218)")
    parser.add_argument("--image-size", type=int, default=64, help="the side load_folder resizes to")
    parser.add_argument("--workdir", type=Path, help="where the JPEGs and the cache go (default: a temporary dir)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        folder, cache_dir = workdir / f"jpegs_{args.num_images}_{width}x{height}", workdir / "cache"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(cache_dir, ignore_errors=True)
        start = time.perf_counter()
        write_folder(folder, args.num_images, width, height)
        write_s = time.perf_counter() - start
        on_disk = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
        print(f"wrote {args.num_images} JPEGs of {width}x{height} ({on_disk / 1e6:.1f} MB) to {folder} in "
              f"{write_s:.1f} s (not part of the timings below)")
        rows = [(label, run_phase(phase, folder, cache_dir, args.image_size)) for label, phase in
                (("imports only", "imports"), ("cold: decode + write cache", "cold"), ("warm: read cache", "warm"))]
        cache_mb = sum(p.stat().st_size for p in cache_dir.glob("*.npz")) / 1e6

    n, side = args.num_images, args.image_size
    uint8_mb = n * side * side * 3 / 1e6
    float32_mb = 4 * uint8_mb
    baseline = rows[0][1]["peak_rss"] / 1e6
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\nload_folder, {n} JPEGs {width}x{height} -> {side}x{side}, {cores} cores; uint8 pixels {uint8_mb:.1f} MB, "
          f"float32 images {float32_mb:.1f} MB, cache file {cache_mb:.1f} MB")
    print(f"{'phase':28s} {'load s':>8s} {'img/s':>9s} {'peak RSS MB':>12s} {'- imports MB':>13s} "
          f"{'/ (uint8 + float32)':>20s}")
    for label, row in rows:
        peak = row["peak_rss"] / 1e6
        if row["images"]:
            rate = f"{row['images'] / row['seconds']:9.0f}"
            over = f"{peak - baseline:13.1f}"
            ratio = f"{(peak - baseline) / (uint8_mb + float32_mb):20.2f}"
            print(f"{label:28s} {row['seconds']:8.2f} {rate} {peak:12.1f} {over} {ratio}")
        else:
            print(f"{label:28s} {'-':>8s} {'-':>9s} {peak:12.1f} {'-':>13s} {'-':>20s}")


if __name__ == "__main__":
    main()
