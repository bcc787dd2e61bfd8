"""Trains the LNS autoencoder or beta-VAE with S seeds and checkpoints; re-running resumes.

    python -m experiments.train --config=experiments/configs/train.py:default --workdir=workdirs/ae_kanizsa
    python -m experiments.train --config=experiments/configs/train.py:quick --config.model=vae --workdir=/tmp/q
"""

from absl import app, flags, logging
from ml_collections import config_flags

from noisegroup import train

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/configs/train.py:default", "training config")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics.jsonl, config.json)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _WORKDIR.value is None:
        raise app.UsageError("--workdir is required")
    config = _CONFIG.value
    state = train.train(config.to_dict(), _WORKDIR.value)
    print(f"trained {config.model} on {config.dataset}: {int(state.step[0])} steps x {len(config.seeds)} seed(s); "
          f"metrics in {_WORKDIR.value}/metrics.jsonl")


if __name__ == "__main__":
    app.run(main)
