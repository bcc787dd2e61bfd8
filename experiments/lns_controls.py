"""Which reading of the paper's noisy-reconstruction control reproduces its control row? Runs every reading
(`noisegroup.lns.features.ControlReading`: pixel or logit space x i.i.d. or shared noise x stack or differences x
each normalisation) on the same shipped weights and test images, and ranks them by their distance to the paper's
"AE Rec." row (Table 1).

    python -m experiments.lns_controls                                   # every reading, k-means, ~10 min on 2 cores
    python -m experiments.lns_controls --clustering=ward --readings=pixel/iid/stack/none,pixel/iid/stack/lns

Writes <out>/control_readings.json and prints a table (mean test ARI per dataset; the paper's row first), sorted by
the mean absolute difference to the paper's row. The default control of `experiments.lns` is the best reading here
(README: "The control").
"""

import dataclasses
import itertools
import json
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags
from tqdm.auto import tqdm

from datasets import good_gestalt as gg
from experiments.configs import lns as lns_configs
from noisegroup import atomic, cli
from noisegroup.lns import features, pipeline, results, sweep

_PRETRAINED = flags.DEFINE_string("pretrained", "pretrained", "directory of shipped weights <model>_<dataset>.npz")
_MODEL = flags.DEFINE_enum("model", "ae", ["ae", "vae"], "whose reconstructions the control perturbs")
_N = flags.DEFINE_integer("num_noise_samples", 20, "N noisy samples (the paper: the N of the chosen LNS setting)")
_CLUSTERING = flags.DEFINE_enum("clustering", "kmeans", ["kmeans", "ward"], "clustering method")
_TEST_LIMIT = flags.DEFINE_integer("test_limit", 0, "images per test set (0: all 100)")
_READINGS = flags.DEFINE_list("readings", [], "readings to run, by name (space/noise/stack|diff/normalisation); "
                              "empty: every reading")
_OUT = flags.DEFINE_string("out", "workdirs/lns_controls", "output directory")


def all_readings() -> list[features.ControlReading]:
    return [features.ControlReading(space, noise, difference, norm) for space, noise, difference, norm in
            itertools.product(features.CONTROL_SPACES, features.CONTROL_NOISES, (False, True),
                              features.CONTROL_NORMALISATIONS) if norm != "lns"]  # "lns" is "channel" here


def parse_reading(name: str) -> features.ControlReading:
    parts = name.split("/")
    if len(parts) != 4 or parts[2] not in ("stack", "diff"):
        raise ValueError(f"a reading is space/noise/stack|diff/normalisation, e.g. pixel/iid/stack/none; got {name!r}")
    return features.ControlReading(parts[0], parts[1], parts[2] == "diff", parts[3])


def distance_to_paper(aris: dict[str, float], paper: dict[str, float]) -> float:
    """Mean absolute difference of the readings' mean ARIs to the paper's row."""
    return float(np.mean([abs(aris[d] - paper[d]) for d in paper]))


def main(argv):
    del argv
    with cli.config_errors():
        readings = [parse_reading(r) for r in _READINGS.value] or all_readings()
        config = pipeline.LNSConfig.from_mapping({**lns_configs.get_config("default").to_dict(),
                                                  "models": (_MODEL.value,), "pretrained": _PRETRAINED.value})
    paper = {d: results.paper_value(f"{_MODEL.value}_control", d) for d in gg.NAMES}
    aris = {r.name: {} for r in readings}
    tic = time.perf_counter()
    bar = tqdm(total=len(readings) * len(gg.NAMES), desc="control readings", unit="run")
    for dataset in gg.NAMES:
        graphdef, params, _ = pipeline.model_params(config, Path(_OUT.value), _MODEL.value, dataset)  # shipped
        data = gg.load(dataset, "test")
        limit = _TEST_LIMIT.value or len(data.images)
        for reading in readings:
            bar.set_postfix_str(f"{dataset} {reading.name}")
            settings = dataclasses.replace(config.control_sweep(_N.value), method=_CLUSTERING.value,
                                           control_reading=reading, progress=False)
            result = sweep.evaluate(graphdef, params, data.images[:limit], data.masks[:limit],
                                    jax.random.key(config.lns_seed), settings)
            aris[reading.name][dataset] = float(result.ari.mean())
            bar.update()
    bar.close()
    ranked = sorted(aris, key=lambda name: distance_to_paper(aris[name], paper))
    out = Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "control_readings.json", json.dumps(
        {"model": _MODEL.value, "num_noise_samples": _N.value, "clustering": _CLUSTERING.value,
         "noise_std": config.control_noise_std, "test_images": limit, "paper": paper,
         "readings": {name: {**aris[name], "distance": distance_to_paper(aris[name], paper)}
                      for name in ranked}}, indent=1))
    short = ["Kanizsa", "Closure", "Continuity", "Proximity", "GradOcc", "IlluOcc"]
    print(f"\n{_MODEL.value} control readings, {_CLUSTERING.value}, N = {_N.value}, noise std "
          f"{config.control_noise_std}, {limit} test images; sorted by mean |ARI - paper|:")
    print(f"{'reading':<26}" + "".join(f"{s:>11}" for s in short) + f"{'distance':>10}")
    print(f"{'paper (Table 1)':<26}" + "".join(f"{paper[d]:>11.3f}" for d in gg.NAMES))
    for name in ranked:
        print(f"{name:<26}" + "".join(f"{aris[name][d]:>11.3f}" for d in gg.NAMES)
              + f"{distance_to_paper(aris[name], paper):>10.3f}")
    print(f"\n{(time.perf_counter() - tic) / 60:.1f} min; {out / 'control_readings.json'}")


if __name__ == "__main__":
    cli.run(main)
