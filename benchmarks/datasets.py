"""Benchmark: generating all six default Good Gestalt datasets, every split, written to disk.

    python -m benchmarks.datasets                                  # ours (all cores), then ours on 1 worker
    python -m benchmarks.datasets --reference PATH/create_datasets.py   # and the reference, side by side

Prints wall time, peak memory of the whole process tree (sampled), and the on-disk size. The reference (optional,
not part of noisegroup) is run on the same machine in a subprocess with visualisation off and with its documented
memory-leak fix applied at load time (its strided views keep each 256 x 256 float64 image alive, about 48 GB; copying
the slice gives byte-identical output): unfixed, it cannot run on a 24 GB machine. Without ``--reference`` the
reference figure printed is the one quoted in the issue (6.5 min on this 2-core machine), marked as quoted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

QUOTED_REFERENCE_S = 6.5 * 60


class TreeMemory:
    """Samples the resident memory of this process and all its descendants (Linux /proc) every 50 ms."""

    def __init__(self, root: int):
        self.root, self.peak, self._stop = root, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.sample())

    def sample(self) -> int:
        parents, rss = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        tree, frontier = {self.root}, [self.root]
        while frontier:
            pid = frontier.pop()
            children = [p for p, parent in parents.items() if parent == pid and p not in tree]
            tree.update(children)
            frontier.extend(children)
        return sum(rss.get(p, 0) for p in tree)


def run_measured(command: list[str], cwd: str | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak tree RSS bytes, output) of a subprocess."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeMemory(process.pid) as memory:
        output, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, memory.peak, output


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


REFERENCE_DRIVER = textwrap.dedent(
    """
    import importlib.util, os, sys, types
    path, out = sys.argv[1], sys.argv[2]
    source = open(path).read()
    # The documented leak fix (spec quirk 9): copy the strided slice so the full 256 px image can be freed.
    for view in ("image[:,:,::downsampling_factor,::downsampling_factor]",
                 "image[:,:,::self.downsampling_factor,::self.downsampling_factor]"):
        source = source.replace(view, view + ".copy()")
    sys.modules.setdefault("utils", types.SimpleNamespace(str2bool=lambda v: str(v).lower() in ("1", "true")))
    module = types.ModuleType("reference_generator")
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)
    os.makedirs(out, exist_ok=True); os.chdir(out)
    sizes = dict(train_image_num=30000, valid_image_num=300, test_image_num=100, downsampling=True)
    for cls, extra in [("ClosureDataset", {}), ("IllusoryOcclusionDataset", {}), ("KanizsaDataset", {}),
                       ("ContinuityDataset", {}), ("GradientOcclusionDataset", {}),
                       ("ProximityGroupingDataset", {"same_ratio": 0.30})]:
        dataset = getattr(module, cls)(visualize=False)
        dataset.generate_train_val_dataset(**sizes, **extra)
        dataset.generate_test_dataset(test_image_num=100)
    """
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="the reference's datasets/create_datasets.py (optional)")
    parser.add_argument("--workers", type=int, default=None, help="ours: rendering processes (default: all cores)")
    parser.add_argument("--skip-single", action="store_true", help="do not also time ours on 1 worker")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("noisegroup", args.workers)] + ([] if args.skip_single else [("noisegroup, 1 worker", 1)])
        for label, workers in runs:
            out = Path(tmp) / label.replace(" ", "_").replace(",", "")
            command = [sys.executable, "-m", "datasets.good_gestalt", "--out", str(out), "--no-preview"]
            command += [] if workers is None else ["--workers", str(workers)]
            seconds, peak, _ = run_measured(command, cwd=str(root))
            rows.append((label, seconds, peak, dir_size(out), False))
        if args.reference is not None:
            out = Path(tmp) / "reference"
            driver = Path(tmp) / "driver.py"
            driver.write_text(REFERENCE_DRIVER)
            seconds, peak, _ = run_measured([sys.executable, str(driver), str(args.reference.resolve()), str(out)])
            rows.append(("reference (leak fixed)", seconds, peak, dir_size(out), False))
        else:
            rows.append(("reference (quoted in the issue)", QUOTED_REFERENCE_S, None, None, True))

    reference_s = rows[-1][1]
    print(f"\nAll six Good Gestalt datasets, every split (30,000 / 300 / 100 / 100), 64 px, {os.cpu_count()} cores")
    print(f"{'run':34s} {'wall s':>8s} {'x faster':>9s} {'peak RAM GB':>12s} {'disk MB':>9s}")
    for label, seconds, peak, disk, quoted in rows:
        peak_s = "-" if peak is None else f"{peak / 1e9:.2f}"
        disk_s = "-" if disk is None else f"{disk / 1e6:.1f}"
        print(f"{label:34s} {seconds:8.1f} {reference_s / seconds:9.1f} {peak_s:>12s} {disk_s:>9s}")


if __name__ == "__main__":
    main()
