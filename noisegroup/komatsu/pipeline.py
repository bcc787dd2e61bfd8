"""The MONet loss ablation end to end: data, training (or resuming) every condition's seeds, evaluation, tests,
tables, figures.

    results = run(config, workdir)     # what `python -m experiments.monet` does
    print(format_report(results))

For every condition the config runs (its `conditions` table, the paper's in ``experiments/configs/monet.py``, or
the `selected` names of it):

1. train or resume its S seeds with `noisegroup.engine.loop.train` (one program, the seeds vmapped or looped) in
   `workdir/models/<condition>/` (or `.../seeds_<first>-<last>/` per group of `seeds_per_run` seeds). Conditions
   with the same training config (nll_m is 01) share one run, trained once: `run_names` says which. The loss
   weights are an input of the compiled step, so conditions that differ only in their weights share one program;
2. evaluate every seed on held-out images (the `test` split; training validates on `valid`): the attention masks'
   argmax over slots against the ground truth, ARI and FG-ARI per image with scikit-learn's semantics
   (`noisegroup.metrics.batch_ari`), the per-seed value is the mean over images; saved to
   `workdir/evaluation/<run>.npz` with a fingerprint of the run (config and steps) and of the evaluation settings,
   so a re-run loads it instead of recomputing;
3. medians per condition next to the paper's, and the paper's tests between conditions (`analysis.ablation_tests`)
   for each metric of `test_metrics`.

Then `results.json`, `results.csv` (one row per condition and seed) and the figures (`noisegroup.komatsu.plots`).
The config is checked whole (`AblationConfig`, and every condition's training config through the engine's schema)
before any data is generated or any model trained.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from noisegroup import atomic, metrics, stats
from noisegroup.checks import check_workdir, closest
from noisegroup.engine import config as engine_config
from noisegroup.engine import loop, runlog, workdir_lock
from noisegroup.komatsu import analysis, data, plots
from noisegroup.models import monet

DATASETS = ("multi_dsprites",)  # Objects Room has no offline source (spec section 9)
METRICS = ("ari", "fg_ari")
BACKGROUND_SHARE = 0.05  # a slot covers the background when it wins at least this share of its pixels
EVALUATION_VERSION = 2  # bump when the evaluation changes: cached evaluations of other versions are redone


@dataclasses.dataclass(frozen=True)
class Condition:
    """One condition of the ablation: a weight for each MONet loss term, and whether the latent is sampled.

    Attributes:
        loss_weights: {term of `MonetFamily.loss_terms`: weight}; a term left out keeps the family's default weight
            (so a condition lists every term, 0 where it drops one).
        sample_latent: z = mu + sigma eps (True) or z = mu (False); None applies the paper's eps = 0 rule: the latent
            is sampled exactly when beta (the "kl" weight) is > 0.
    """

    loss_weights: Mapping[str, float]
    sample_latent: bool | None = None

    @classmethod
    def from_mapping(cls, name: str, value: Any) -> "Condition":
        if not isinstance(value, Mapping):
            raise ValueError(f"conditions.{name} must map loss_weights (and sample_latent) to values, got {value!r}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            if key not in known:
                raise ValueError(f"unknown key conditions.{name}.{key}{closest(key, known)}")
        if not isinstance(value.get("loss_weights"), Mapping):
            raise ValueError(f"conditions.{name}.loss_weights must map loss terms to weights, got "
                             f"{value.get('loss_weights')!r}")
        if value.get("sample_latent") not in (None, True, False):
            raise ValueError(f"conditions.{name}.sample_latent must be true, false or None (the eps = 0 rule), got "
                             f"{value.get('sample_latent')!r}")
        return cls(loss_weights=dict(value["loss_weights"]), sample_latent=value.get("sample_latent"))

    def train_overrides(self) -> dict:
        """The training-config keys this condition sets: model, loss_weights, sample_latent."""
        sample = self.sample_latent
        if sample is None:  # eps = 0 rule
            sample = float(self.loss_weights.get("kl") or 0.0) > 0
        return {"model": "monet", "loss_weights": dict(self.loss_weights), "sample_latent": bool(sample)}


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """The keys of a MONet ablation config (``experiments/configs/monet.py`` says what each means and holds the
    paper's condition table)."""

    conditions: Mapping[str, Condition]
    selected: tuple[str, ...] = ()
    seeds: tuple[int, ...] = tuple(range(1, 101))  # the paper's 100
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str = "multi_dsprites"
    image_size: int = 64
    downsample: str = "nearest"
    max_sprites: int = 4
    variant: str = "colored_on_colored"
    eval_images: int = 1000
    seeds_per_run: int = 0
    test_metrics: tuple[str, ...] = METRICS
    slot_images: int = 3
    figures: bool = True
    progress: bool = True

    # Training-config keys the pipeline sets (per condition, or from the fields above), so `train` must not.
    SET_BY_PIPELINE = ("model", "loss_weights", "sample_latent", "seeds", "dataset", "progress")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> "AblationConfig":
        """The validated config: every key known, every value checked, and every condition's training config
        parsed by the engine's schema (once: `run_configs`), so a typo fails in one line before any work.

        Raises:
            ValueError: naming the key (and the closest known key for a typo) or the bad value.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for key in config:
            if key not in known:
                raise ValueError(f"unknown MONet ablation config key {key!r}{closest(key, known)}")
        values = dict(config)
        table = values.get("conditions")
        if not isinstance(table, Mapping) or not table:
            raise ValueError(f"conditions must map condition names to their loss weights (the table in "
                             f"experiments/configs/monet.py), got {table!r}")
        values["conditions"] = {str(name): Condition.from_mapping(name, v) for name, v in table.items()}
        for key in ("selected", "seeds", "test_metrics"):
            if key in values:
                if isinstance(values[key], (str, int)):
                    raise ValueError(f"{key} must be a sequence, got {values[key]!r}")
                values[key] = tuple(values[key])
        c = cls(**values)
        names = tuple(c.conditions)
        if len(set(c.selected)) != len(c.selected):
            raise ValueError(f"selected must list distinct condition names, got {c.selected!r}")
        for name in c.selected:
            if name not in names:
                raise ValueError(f"unknown condition {name!r}{closest(name, names)}; known: {names}")
        if not c.seeds or len(set(c.seeds)) != len(c.seeds) or not all(isinstance(s, int) for s in c.seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {c.seeds!r}")
        if c.dataset not in DATASETS:
            hint = ("; Objects Room has no offline source here" if c.dataset == "objects_room"
                    else closest(c.dataset, DATASETS))
            raise ValueError(f"dataset must be one of {DATASETS}, got {c.dataset!r}{hint}")
        data.check_image_size(c.image_size)
        if c.downsample not in data.DOWNSAMPLING:
            raise ValueError(f"downsample must be one of {data.DOWNSAMPLING}, got {c.downsample!r}")
        most = data.most_sprites(c.variant)
        if not isinstance(c.max_sprites, int) or not 1 <= c.max_sprites <= most:
            raise ValueError(f"max_sprites must be an integer in [1, {most}] ({c.variant}), got {c.max_sprites!r}")
        for key, low in (("eval_images", 1), ("seeds_per_run", 0), ("slot_images", 0)):
            if not isinstance(getattr(c, key), int) or getattr(c, key) < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {getattr(c, key)!r}")
        if not c.test_metrics or any(m not in METRICS for m in c.test_metrics):
            raise ValueError(f"test_metrics must be a non-empty subset of {METRICS}, got {c.test_metrics!r}")
        for key in c.SET_BY_PIPELINE:
            if key in c.train:
                raise ValueError(f"train.{key} is set by the pipeline (per condition or from the top-level fields); "
                                 f"remove it from the training config")
        c.run_configs  # noqa: B018  (every condition parsed by the engine's schema, once)
        return c

    @property
    def names(self) -> tuple[str, ...]:
        """The conditions this experiment runs, in order: `selected`, or every condition of the table."""
        return self.selected or tuple(self.conditions)

    @functools.cached_property
    def run_configs(self) -> dict[str, engine_config.RunConfig]:
        """{condition: its training config, parsed once}: `train` under the condition's loss weights and latent
        sampling, with every seed. Conditions that differ only in their weights share one compiled step."""
        runs = {}
        for name, condition in self.conditions.items():
            try:
                runs[name] = engine_config.parse({**self.train, **condition.train_overrides(),
                                                  "seeds": tuple(self.seeds), "dataset": self.dataset,
                                                  "progress": self.progress})
            except ValueError as error:  # named with its condition
                raise ValueError(f"condition {name!r} (train + conditions.{name}): {error}") from None
        return runs

    def train_config(self, condition: str, seeds: tuple[int, ...] | None = None) -> engine_config.RunConfig:
        """The training config of `condition` for `seeds` (default: every seed)."""
        run = self.run_configs[condition]
        if seeds is None or tuple(seeds) == run.engine.seeds:
            return run
        return run.with_seeds(seeds)

    def run_names(self) -> dict[str, str]:
        """{condition: the run it is evaluated from}: the first listed condition with the same training config."""
        first: dict[str, str] = {}
        runs = {}
        for name in self.names:
            key = json.dumps(atomic.jsonable(engine_config.comparable(self.train_config(name).as_dict())),
                             sort_keys=True)
            runs[name] = first.setdefault(key, name)
        return runs

    def seed_groups(self) -> list[tuple[int, ...]]:
        """The seeds of each training program (`seeds_per_run`; 0: all in one)."""
        size = self.seeds_per_run or len(self.seeds)
        return [tuple(self.seeds[i:i + size]) for i in range(0, len(self.seeds), size)]

    def run_dir(self, workdir: Path, run: str, group: tuple[int, ...]) -> Path:
        base = workdir / "models" / run
        return base if len(self.seed_groups()) == 1 else base / f"seeds_{group[0]}-{group[-1]}"

    def evaluation_path(self, workdir: Path, run: str, group: tuple[int, ...]) -> Path:
        suffix = "" if len(self.seed_groups()) == 1 else f"_seeds_{group[0]}-{group[-1]}"
        return workdir / "evaluation" / f"{run}{suffix}.npz"


# --- evaluation --------------------------------------------------------------------------------------------------


def _display(family: monet.MonetFamily, x: np.ndarray) -> np.ndarray:
    """Model-range values (images, reconstructions, means) -> [0, 1] for figures."""
    x = (x + 1.0) / 2.0 if family.input_range == "[-1,1]" else x
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def evaluate(trainer, params, images: np.ndarray, masks: np.ndarray, batch_size: int, slot_images: int) -> dict:
    """Segmentation scores of every seed on held-out images, and the first seed's outputs on the first images.

    The latent is its mean (z = mu, no noise; the attention masks, which are scored, do not depend on it).

    Args:
        trainer: the run's `noisegroup.engine.trainer.Trainer` (family and graphdef).
        params: the model parameters stacked over seeds (leading axis S).
        images: float32 `[n, h, w, 3]` in [0, 1]; masks: integer labels `[n, h, w]`, 0 = background.
        batch_size: images per forward pass.
        slot_images: images whose slots are kept for `slots.png` (at most `batch_size`).

    Returns:
        {"ari", "fg_ari": float32 `[S, n]` per image (sklearn semantics: 1.0 when degenerate),
         "background_slots": float32 `[S, n]` per image, how many slots win at least `BACKGROUND_SHARE` of the true
             background's pixels (`background_slots`; NaN for an image without background),
         "deepmind_fg_ari_nan": float32 `[S]` fraction of images whose FG-ARI DeepMind's code makes NaN,
         "slot_images", "slot_reconstructions" `[m, h, w, 3]`, "slot_masks" `[m, k, h, w]`,
         "slot_means" `[m, k, h, w, 3]` (images in [0, 1])}.
    """
    family = trainer.family
    num_labels = max(int(family.num_slots), int(family.max_mask_labels), int(masks.max()) + 1)

    @jax.jit
    def forward(p, x, m):  # one program: the winning slot per pixel, DeepMind's NaN cases, and the outputs
        outputs = family.outputs(trainer.model_fn(p), {"images": x}, None)  # z = mu
        pred = jnp.argmax(outputs["log_masks"], axis=1).astype(jnp.int32)  # [b, h, w]
        nan = jax.vmap(lambda a, b: metrics.deepmind_fg_ari_is_nan(a, b, num_labels))(pred, m.astype(jnp.int32))
        return pred, nan, outputs

    n = len(images)
    batch_size = min(batch_size, n)
    padded = -n % batch_size  # pad to whole batches: one compiled shape
    images_p = np.concatenate([images, np.zeros((padded, *images.shape[1:]), images.dtype)])
    masks_p = np.concatenate([masks, np.zeros((padded, *masks.shape[1:]), masks.dtype)])
    params = jax.device_get(params)  # seeds sliced on the host: no program per parameter shape
    num_seeds = jax.tree.leaves(params)[0].shape[0]
    out = {"ari": [], "fg_ari": [], "background_slots": [], "deepmind_fg_ari_nan": []}
    result = {}
    for s in range(num_seeds):
        p = jax.device_put(jax.tree.map(lambda x: x[s], params))
        preds, nans = [], []
        for i in range(0, len(images_p), batch_size):
            pred, nan, outputs = forward(p, images_p[i:i + batch_size], masks_p[i:i + batch_size])
            preds.append(np.asarray(jax.device_get(pred)))
            nans.append(np.asarray(jax.device_get(nan)))
            m = min(slot_images, batch_size)
            if s == 0 and i == 0 and m:  # the first seed's slots on the first images, for slots.png
                o = jax.device_get(outputs)
                result.update(slot_images=images[:m], slot_reconstructions=_display(family, o["reconstruction"][:m]),
                              slot_masks=np.exp(o["log_masks"][:m]).astype(np.float32),
                              slot_means=_display(family, o["means"][:m]))
        pred = np.concatenate(preds)[:n]
        out["ari"].append(metrics.batch_ari(pred, masks))
        out["fg_ari"].append(metrics.batch_ari(pred, masks, foreground=True))
        out["background_slots"].append(background_slots(pred, masks, family.num_slots))
        out["deepmind_fg_ari_nan"].append(np.mean(np.concatenate(nans)[:n]))
    result.update({k: np.asarray(v, np.float32) for k, v in out.items()})
    return result


def background_slots(pred: np.ndarray, masks: np.ndarray, num_slots: int,
                     share: float = BACKGROUND_SHARE) -> np.ndarray:
    """How many slots cover the background: per image, the slots that win at least `share` of the pixels whose
    true label is 0 (a slot with a few stray background pixels does not count).

    Args:
        pred: int `[n, h, w]` the winning slot per pixel; masks: int `[n, h, w]` true labels, 0 = background.
        num_slots: K.

    Returns:
        float32 `[n]`: 1 when one slot holds the background, up to K; NaN for an image without background.
    """
    background = masks == 0  # [n, h, w]
    counts = np.stack([((pred == k) & background).sum(axis=(1, 2)) for k in range(num_slots)], 1)  # [n, K]
    total = background.sum(axis=(1, 2))  # [n]
    covering = (counts >= share * total[:, None]).sum(axis=1).astype(np.float32)
    return np.where(total > 0, covering, np.nan).astype(np.float32)


def stop_steps(workdir: Path, seeds: tuple[int, ...]) -> list[int | None]:
    """Per seed, the step at which Komatsu's early-termination rule stopped it (None: it did not), from the run's
    `metrics.jsonl` ("valid/stopped" at each validation)."""
    path = workdir / "metrics.jsonl"
    stopped: list[int | None] = [None] * len(seeds)
    if path.exists():
        for record in runlog.read_metrics(path):
            flags = record.get("valid/stopped")
            if flags is None:
                continue
            for s, flag in enumerate(np.atleast_1d(flags)):
                if flag and stopped[s] is None:
                    stopped[s] = int(record["step"])
    return stopped


def _fingerprint(config: AblationConfig, run: engine_config.RunConfig, steps: list[int]) -> str:
    """Digest of everything an evaluation depends on (a cached evaluation with another digest is redone). The loss
    weights enter as the loss they give (`engine_config.comparable`), as before conditions listed every term."""
    items = {"train": engine_config.comparable(run.as_dict()), "steps": steps, "version": EVALUATION_VERSION,
             **{key: getattr(config, key) for key in ("dataset", "image_size", "downsample", "max_sprites",
                                                      "eval_images", "slot_images")}}
    if config.variant != "colored_on_colored":  # so evaluations cached before variants existed stay valid
        items["variant"] = config.variant
    return hashlib.sha256(json.dumps(atomic.jsonable(items), sort_keys=True).encode()).hexdigest()[:16]


# --- the experiment ----------------------------------------------------------------------------------------------


class _Data:
    """The splits at the experiment's image size, each loaded on first use."""

    def __init__(self, config: AblationConfig):
        self.config, self.cache = config, {}

    def __call__(self, split: str) -> dict[str, np.ndarray]:
        if split not in self.cache:
            c = self.config
            engine = c.run_configs[c.names[0]].engine  # every condition trains on the same data
            count = {"train": engine.train_limit, "valid": engine.valid_limit, "test": c.eval_images}[split]
            self.cache[split] = data.load_split(split, count, c.image_size, c.downsample, c.max_sprites, c.variant)
        return self.cache[split]


def evaluation_layout(config: AblationConfig, num_seeds: int) -> tuple[dict, tuple[str, ...]]:
    """(`atomic.check_arrays` shapes, optional arrays) of what `train_and_evaluate` caches for a group of
    `num_seeds` seeds: a cache that lost an array, or holds another number of seeds, is recomputed."""
    side = config.image_size  # the images the experiment trains and scores on (downsampled to this size)
    shapes = {"ari": ("seeds", "images"), "fg_ari": ("seeds", "images"), "background_slots": ("seeds", "images"),
              "deepmind_fg_ari_nan": ("seeds",),
              "seeds": ("seeds",), "steps": ("seeds",), "stopped_at": ("seeds",),
              "slot_images": ("slots", side, side, 3), "slot_reconstructions": ("slots", side, side, 3),
              "slot_masks": ("slots", "k", side, side), "slot_means": ("slots", "k", side, side, 3)}
    slots = tuple(k for k in shapes if k.startswith("slot_")) if not config.slot_images else ()
    return shapes, slots


def train_and_evaluate(config: AblationConfig, workdir: Path, run: str, group: tuple[int, ...], splits: _Data,
                       log: Callable[[str], None]) -> dict:
    """Trains (or resumes) one run's seed group, then evaluates it (or loads its cached evaluation).

    Returns:
        The evaluation arrays (see `evaluate`) plus "seeds", "steps", "stopped_at" (-1: never) per seed, and
        "trained_steps" (steps this call trained) and "train_seconds".
    """
    train_config = config.train_config(run, group)
    run_dir = config.run_dir(workdir, run, group)
    tic = time.perf_counter()
    train = splits("train")
    started = []  # the step training resumed from: the restored checkpoint's, not the last metrics line's
    state = loop.train(train_config, run_dir, {"images": train["images"]}, splits("valid"), on_start=started.append)
    seconds = time.perf_counter() - tic
    steps = [int(s) for s in np.asarray(jax.device_get(state.step))]
    trained = max(steps) - started[0]
    fingerprint = _fingerprint(config, train_config, steps)
    path = config.evaluation_path(workdir, run, group)
    shapes, optional = evaluation_layout(config, len(group))
    result = atomic.read_npz_cache(path, fingerprint, shapes, optional=optional)
    cached = result is not None
    if result is None:
        test = splits("test")
        _, trainer, _ = loop.build(train_config, test["images"].shape[1:])
        result = evaluate(trainer, state.inference_params, test["images"], test["masks"],
                          train_config.engine.batch_size, config.slot_images)
        stopped = stop_steps(run_dir, group)
        result.update(seeds=np.asarray(group), steps=np.asarray(steps),
                      stopped_at=np.asarray([-1 if s is None else s for s in stopped]))
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.save_npz(path, fingerprint=np.array(fingerprint), **result)
    what = f"trained {trained} steps in {seconds:.0f} s" if trained > 0 else "already trained"
    log(f"{run} seeds {list(group)}: step {max(steps)}, {what}; evaluation {'cached' if cached else 'computed'}")
    return {**result, "trained_steps": trained, "train_seconds": seconds if trained > 0 else 0.0}


def run(config: AblationConfig | Mapping[str, Any], workdir: str | Path,
        log: Callable[[str], None] = lambda text: None) -> dict:
    """Runs the ablation of `config` (see ``experiments/configs/monet.py``) in `workdir`; resumes.

    Args:
        config: the experiment config: an `AblationConfig`, or a mapping (validated by `AblationConfig.from_mapping`
            before any work).
        workdir: where models/, evaluation/, results and figures go.
        log: called with one line per trained or resumed run.

    Returns:
        The results written to results.json: {"config", "runs" ({condition: its run}), "conditions" (one row per
        condition, `condition_row`), "tests" ({metric: [test groups]}), "train_seconds" and "trained_steps" (per
        run, in this call: 0 when it only resumed)}.

    Raises:
        ValueError: a bad config (before any work), or a workdir holding runs of another config.
        WorkdirBusyError: another process runs in `workdir`.
    """
    if not isinstance(config, AblationConfig):
        config = AblationConfig.from_mapping(config)
    workdir = check_workdir(workdir)
    with workdir_lock.hold(workdir):  # one experiment per workdir (each run's directory has its own lock too)
        return _run(config, workdir, log)


DATA_KEYS = ("dataset", "image_size", "downsample", "max_sprites", "variant")  # what the data of a workdir is


def _run(config: AblationConfig, workdir: Path, log: Callable[[str], None]) -> dict:
    # The runs' configs (models/*/config.json) do not say which images they trained on: data.json does, so a
    # workdir is never resumed on other data. Workdirs from before variants existed ran colored_on_colored.
    runlog.check_or_write_config(workdir, {key: getattr(config, key) for key in DATA_KEYS},
                                 defaults={"variant": "colored_on_colored"}, name="data.json")
    splits = _Data(config)
    run_names = config.run_names()
    evaluations, seconds = {}, {}
    for run_name in dict.fromkeys(run_names.values()):
        parts = [train_and_evaluate(config, workdir, run_name, group, splits, log) for group in config.seed_groups()]
        evaluations[run_name] = {k: np.concatenate([np.atleast_1d(p[k]) for p in parts])
                                 for k in ("ari", "fg_ari", "background_slots", "deepmind_fg_ari_nan", "seeds", "steps",
                                           "stopped_at")}
        evaluations[run_name]["trained_steps"] = sum(p["trained_steps"] for p in parts)
        seconds[run_name] = sum(p["train_seconds"] for p in parts)
    rows = [condition_row(config, name, run_names[name], evaluations[run_names[name]]) for name in config.names]
    tests = {}
    for metric in config.test_metrics:
        per_seed = {r["condition"]: r[f"per_seed_{metric}"] for r in rows}
        tests[metric] = [g.as_dict() for g in analysis.ablation_tests(per_seed)]
    results = {"config": atomic.jsonable(dataclasses.asdict(config)), "runs": run_names, "conditions": rows,
               "tests": tests, "train_seconds": seconds,
               "trained_steps": {r: int(e["trained_steps"]) for r, e in evaluations.items()}}
    write_results(workdir, results)
    if config.figures:
        plots.write_all(workdir, config, results)
    return results


def condition_row(config: AblationConfig, condition: str, run: str, evaluation: Mapping[str, np.ndarray]) -> dict:
    """One condition's summary: medians over seeds of the per-seed means over images, and the per-seed values."""
    ari = evaluation["ari"].mean(axis=1)  # [S] per-seed ARI (mean over held-out images)
    fg_ari = evaluation["fg_ari"].mean(axis=1)
    background = np.nanmean(evaluation["background_slots"], axis=1)  # [S] slots covering the background
    stopped = [int(s) if s >= 0 else None for s in evaluation["stopped_at"]]
    return {"condition": condition, "label": analysis.LABELS.get(condition, condition), "run": run,
            "num_seeds": int(ari.size), "seeds": [int(s) for s in evaluation["seeds"]],
            "median_ari": float(np.median(ari)), "median_fg_ari": float(np.median(fg_ari)),
            "mean_ari": float(np.mean(ari)), "mean_fg_ari": float(np.mean(fg_ari)),
            "paper_median_ari": analysis.paper_median(condition, config.dataset),
            "median_background_slots": float(np.median(background)),
            "per_seed_ari": [float(x) for x in ari], "per_seed_fg_ari": [float(x) for x in fg_ari],
            "per_seed_background_slots": [float(x) for x in background],
            "per_seed_deepmind_fg_ari_nan": [float(x) for x in evaluation["deepmind_fg_ari_nan"]],
            "steps": [int(s) for s in evaluation["steps"]], "stopped_at": stopped,
            "stopped_early": sum(s is not None for s in stopped), "eval_images": int(evaluation["ari"].shape[1])}


CSV_FIELDS = ("condition", "label", "run", "seed", "ari", "fg_ari", "background_slots", "deepmind_fg_ari_nan", "steps",
              "stopped_at", "paper_median_ari")


def write_results(workdir: Path, results: Mapping) -> None:
    """results.json (everything) and results.csv (one row per condition and seed)."""
    atomic.write_json(workdir / "results.json", results)
    text = io.StringIO()
    writer = csv.DictWriter(text, CSV_FIELDS)
    writer.writeheader()
    for r in results["conditions"]:
        for i, seed in enumerate(r["seeds"]):
            writer.writerow({"condition": r["condition"], "label": r["label"], "run": r["run"], "seed": seed,
                             "ari": r["per_seed_ari"][i], "fg_ari": r["per_seed_fg_ari"][i],
                             "background_slots": r["per_seed_background_slots"][i],
                             "deepmind_fg_ari_nan": r["per_seed_deepmind_fg_ari_nan"][i], "steps": r["steps"][i],
                             "stopped_at": "" if r["stopped_at"][i] is None else r["stopped_at"][i],
                             "paper_median_ari": "" if r["paper_median_ari"] is None else r["paper_median_ari"]})
    atomic.write_text(workdir / "results.csv", text.getvalue())


def format_report(results: Mapping) -> str:
    """The printed tables: per condition (ours and the paper's medians), then the tests for each metric."""
    config = results["config"]
    paper = analysis.paper_p_values(config["dataset"])
    lines = [f"Per condition, {config['dataset']} at {config['image_size']}x{config['image_size']}: medians over "
             f"seeds of the per-seed mean over {results['conditions'][0]['eval_images']} held-out images "
             f"(paper: 100 seeds, 64x64, 1e6 steps or early termination)",
             analysis.format_condition_table(results["conditions"])]
    for metric, groups in results["tests"].items():
        lines.append(f"\nTests on per-seed {metric.upper().replace('_', '-')} (paper p-values are on ARI, 100 seeds):")
        lines.append(analysis.format_test_groups([_group_from_dict(g) for g in groups], paper))
    return "\n".join(lines)


def _group_from_dict(group: Mapping) -> analysis.TestGroup:
    tests = tuple(stats.PairedTest(**t) for t in group["tests"])
    correction = group.get("correction")
    if correction is not None:
        correction = stats.MultipleComparison(**{k: tuple(v) if isinstance(v, list) else v
                                                 for k, v in correction.items()})
    return analysis.TestGroup(group["section"], group["title"], tests, correction)
