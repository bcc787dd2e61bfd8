"""Exports the models an LNS run trained as small weights to ship (`noisegroup.engine.pretrained`: int8 kernels).

The weights in pretrained/ (what the `default` config segments with) were made by these commands, on 2 CPU cores
(~8.5 steps/s at batch 32, so ~16 min a dataset and ~95 min for step 1; any extra flag of step 1 that changes
training must be given to step 2 as well):

    # 1. train the default config's six AEs (segmenting only 8 images each, no figures: just to see they work)
    python -m experiments.lns --config.pretrained="" --config.models="('ae',)" --config.test_limit=8 \
        --config.figures=False --config.control=False --workdir=workdirs/lns_pretrain
    # 2. export seed 0 of every (model, dataset) trained there
    python -m experiments.export_pretrained --config.models="('ae',)" --workdir=workdirs/lns_pretrain --out=pretrained
    # 3. segment with them, no training (the default does exactly this)
    python -m experiments.lns --config.pretrained=pretrained
    # the VAEs (6,000 steps: the default's model_train.vae): steps 1 and 2 with --config.models="('vae',)"
    python -m experiments.lns --config.pretrained="" --config.models="('vae',)" --config.test_limit=8 \
        --config.figures=False --config.control=False --workdir=workdirs/lns_vae_pretrain
    python -m experiments.export_pretrained --config.models="('vae',)" --workdir=workdirs/lns_vae_pretrain

The baselines of a `table` run (GENESIS, GENESIS-v2; `--config.baseline_pretrained=DIR` scores them without
training; ~25 MB a GENESIS at float16, so none are shipped):

    python -m experiments.export_pretrained --config=experiments/configs/lns.py:table --which=baselines \
        --workdir=workdirs/lns_table --out=weights --precision=float16

Files already exported can be re-stored at another precision without their run (`--convert`; int8 from float16
quantises the float16 values: this is how the AE files, exported as float16 before int8 existed, became int8):

    python -m experiments.export_pretrained --config.models="('ae',)" --convert=pretrained --precision=int8 \
        --out=pretrained

(The shipped AE files were trained to 5,000 steps first, then resumed to 8,000 by re-running step 1 with
`--config.train.num_steps=8000`: the learning-rate schedule is constant after its warm-up, so extending a run
is exact, and the resumed part took 36.4 min.)

Step 2 reads the checkpoints only (`noisegroup.engine.restore`: no data, no training) and refuses a run that has not
reached the config's `num_steps`. Each file is <out>/<model>_<dataset>.npz, ~1.8 MB a model at int8 (3.9 MB at
float16; the repository's budget is ~30 MB in all, and int8 leaves the default's ARI unchanged: README).
"""

import jax
from absl import flags

from noisegroup import cli
from noisegroup.engine import loop, pretrained
from noisegroup.errors import ExpectedError
from noisegroup.lns import results
from noisegroup.lns.pipeline import LNSConfig

_CONFIG = cli.define_config_file("experiments/configs/lns.py:default", "the LNS config trained")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/lns", "the LNS run directory holding models/")
_OUT = flags.DEFINE_string("out", "pretrained", "where the .npz files go")
_PRECISION = flags.DEFINE_enum("precision", "int8", list(pretrained.PRECISIONS), "how the weights are stored")
_WHICH = flags.DEFINE_enum("which", "models", ["models", "baselines", "both"],
                           "export the config's LNS models, its baselines (GENESIS, GENESIS-v2), or both")
_CONVERT = flags.DEFINE_string("convert", "", "a directory of exported files to re-store at --precision instead of "
                               "exporting a run (the config's models and datasets)")


def main(argv):
    del argv
    with cli.config_errors():
        config = LNSConfig.from_mapping({**_CONFIG.value.to_dict(), "pretrained": ""})
    names = {"models": config.models, "baselines": config.baselines,
             "both": (*config.models, *config.baselines)}[_WHICH.value]
    for dataset in config.datasets:
        for model in names:
            if _CONVERT.value:
                with cli.config_errors():
                    path = pretrained.convert(f"{_CONVERT.value}/{model}_{dataset}.npz",
                                              f"{_OUT.value}/{model}_{dataset}.npz", _PRECISION.value)
                print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {_PRECISION.value}")
                continue
            train_config, state = loop.restore(results.model_dir(_WORKDIR.value, model, dataset))
            steps = int(state.step[0])
            if steps != train_config["num_steps"]:
                raise ExpectedError(f"{model}_{dataset}: the run stands at step {steps} of "
                                    f"{train_config['num_steps']}; finish it first (re-run the training command)")
            seed0 = jax.tree.map(lambda x: x[:1], state.inference_params)
            meta = dict(model=model, dataset=dataset, latent_dim=train_config.get("latent_dim"), steps=steps,
                        seed=int(train_config["seeds"][0]), train=train_config)
            path = pretrained.save(f"{_OUT.value}/{model}_{dataset}.npz", seed0, meta, _PRECISION.value)
            print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, step {meta['steps']}")


if __name__ == "__main__":
    cli.run(main)
