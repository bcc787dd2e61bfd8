"""Trains a model family (the LNS autoencoder or beta-VAE, GENESIS, GENESIS-v2) with S seeds and checkpoints on a Good
Gestalt dataset, Multi-dSprites, CelebA or a folder of images; re-running resumes.

    python -m experiments.train --config=experiments/configs/train.py:default --workdir=workdirs/ae_kanizsa
    python -m experiments.train --config=experiments/configs/train.py:quick --config.model=vae --workdir=/tmp/q
    python -m experiments.train --config=experiments/configs/genesis.py:default --config.dataset=proximity \\
        --workdir=workdirs/genesis_proximity
    python -m experiments.train --config=experiments/configs/train.py:celeba --config.model=vae \
        --config.data_dir=/data/CelebAMask-HQ --workdir=workdirs/vae_celeba
    python -m experiments.train --config=experiments/configs/train.py:default --config.dataset=folder \
        --config.data_dir=~/my_images --config.latent_dim=50 --workdir=workdirs/ae_mine

Several processes (one per host, e.g. a TPU pod slice or GPU nodes): the same command on every host, with
`--coordinator=HOST:PORT --num_processes=P --process_id=I` (README: "Many hosts").
"""

from noisegroup import malloc

malloc.reuse_freed_memory()  # before JAX starts its threads (noisegroup/malloc.py says why)

from absl import flags  # noqa: E402

from datasets import good_gestalt as gg  # noqa: E402
from datasets import images as image_datasets  # noqa: E402
from noisegroup import cli  # noqa: E402
from noisegroup.checks import check_workdir, closest  # noqa: E402
from noisegroup.engine import config as engine_config  # noqa: E402
from noisegroup.engine import loop, parallel  # noqa: E402
from noisegroup.errors import BadInputError  # noqa: E402
from noisegroup.komatsu import data as multi_dsprites  # noqa: E402

_CONFIG = cli.define_config_file("experiments/configs/train.py:default", "training config")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics.jsonl, config.json)")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0, for a multi-process run")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in a multi-process run")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index in a multi-process run")


def training_data(dataset: str, train_limit: int, valid_limit: int, data_dir: str = ""):
    """(train, valid) of a Good Gestalt dataset (images), of Multi-dSprites at 64 x 64 (images and masks: the
    validation scores segmentations), or of a user's images (`datasets.images`: CelebA as the LNS reference builds it
    from CelebAMask-HQ, the aligned CelebA, any folder; read from `data_dir`), the first `*_limit` images (0: the
    whole split)."""
    if dataset == "multi_dsprites":
        return (multi_dsprites.load_split("train", train_limit, 64), multi_dsprites.load_split("valid", valid_limit, 64))
    if dataset in image_datasets.NAMES:
        return image_datasets.training_images(dataset, data_dir or None, train_limit, valid_limit)
    if dataset not in gg.NAMES:
        known = (*gg.NAMES, "multi_dsprites", *image_datasets.NAMES)
        raise BadInputError(f"unknown dataset {dataset!r}{closest(dataset, known)}; known: {known}")
    return gg.training_images(dataset, train_limit, valid_limit)


def main(argv):
    del argv
    if _WORKDIR.value is None:
        raise BadInputError("--workdir is required")
    with cli.config_errors():  # every key and value, and the workdir, checked before any work (parsed once)
        config = engine_config.parse(_CONFIG.value.to_dict())
        check_workdir(_WORKDIR.value)
    parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    engine = config.engine
    state = loop.train(config, _WORKDIR.value, *training_data(engine.dataset, engine.train_limit, engine.valid_limit,
                                                                  engine.data_dir))
    print(f"trained {engine.model} on {engine.dataset}: {int(state.step[0])} steps x {len(engine.seeds)} "
          f"seed(s); metrics in {_WORKDIR.value}/metrics.jsonl")


if __name__ == "__main__":
    cli.run(main)
