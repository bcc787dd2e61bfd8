"""Trains the toy family ("tiny", tests/toy_family.py) from the command line, optionally as one process of several:
the distributed tests run it in subprocesses, where the 64 x 64 autoencoder would spend a minute compiling.

    python tests/toy_train.py WORKDIR NUM_STEPS [DATA_PARALLEL [COORDINATOR NUM_PROCESSES PROCESS_ID]]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository root, when run as a script

from noisegroup.engine import loop, parallel  # noqa: E402
from toy_family import tiny_config, tiny_images  # noqa: E402


def main(workdir: str, num_steps: str, data_parallel: str = "1", *multi_process: str) -> None:
    if multi_process:
        coordinator, num_processes, process_id = multi_process
        parallel.initialize(coordinator, int(num_processes), int(process_id))
    config = tiny_config(num_steps=int(num_steps), data_parallel=int(data_parallel), seed_batching="vmap",
                         eval_every=2, log_every=2, checkpoint_every=2)
    loop.train(config, workdir, *tiny_images())


if __name__ == "__main__":
    main(*sys.argv[1:])
