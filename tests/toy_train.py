"""Trains the toy family ("tiny", tests/toy_family.py) from the command line, optionally as one process of several:
the distributed and kill -9 tests run it in subprocesses, where the 64 x 64 autoencoder would spend a minute
compiling.

    python tests/toy_train.py WORKDIR [KEY=VALUE ...]

Keys: any `tiny_config` key with an integer value (num_steps, data_parallel, checkpoint_every, ...), and
coordinator, num_processes, process_id to join a multi-process run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, when run as a script

from noisegroup.engine import loop, parallel  # noqa: E402
from toy_family import tiny_config, tiny_images  # noqa: E402

MULTI_PROCESS = ("coordinator", "num_processes", "process_id")


def main(workdir: str, *settings: str) -> None:
    pairs = dict(s.split("=", 1) for s in settings)
    multi = {k: pairs.pop(k) for k in MULTI_PROCESS if k in pairs}
    if multi:
        parallel.initialize(multi["coordinator"], int(multi["num_processes"]), int(multi["process_id"]))
    config = tiny_config(**{"seed_batching": "vmap", "eval_every": 2, "log_every": 2, "checkpoint_every": 2,
                            **{k: int(v) for k, v in pairs.items()}})
    loop.train(config, workdir, *tiny_images())


if __name__ == "__main__":
    main(*sys.argv[1:])
