"""The one schema of a training config: the engine's keys here, each family's keys on the family.

    config = parse(mapping)             # a RunConfig (engine, family, weights), validated before any work
    config.as_dict()                    # the flat config again (config.json)

`TrainConfig`'s fields are the engine's keys and the family's dataclass fields are the model's; a key in neither is
an error naming the closest known key. Fields marked ``resumable`` may change when a run resumes (more steps, other
logging); everything else must equal the workdir's `config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

from noisegroup.atomic import jsonable
from noisegroup.checks import closest
from noisegroup.engine.losses import resolve_weights
from noisegroup.engine.parallel import SEED_BATCHING  # the mappings `parallel` knows
from noisegroup.models import get_family
from noisegroup.models.family import Family

OPTIMIZERS = ("adam", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "linear")


def _resumable(default, **kwargs):
    return dataclasses.field(default=default, metadata={"resumable": True}, **kwargs)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The engine's config keys (see ``experiments/configs/train.py`` for what each means)."""

    model: str = "ae"
    dataset: str = "kanizsa"
    data_dir: str = _resumable("")  # where a user's images live (CelebA, a folder); "" for generated data
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 64
    learning_rate: float = 5e-5
    lr_warmup_steps: int = 0
    lr_schedule: str = "constant"
    lr_decay_steps: int = 0
    grad_clip_norm: float = 0.0
    ema_decay: float = 0.0
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    optimizer: str = "adam"
    rmsprop_decay: float = 0.99
    rmsprop_eps: float = 1e-8
    loss_weights: Mapping[str, float | None] = dataclasses.field(default_factory=dict)
    geco: bool = True
    geco_goal: float = 0.0006
    geco_step_size: float = 1e-5
    geco_alpha: float = 0.99
    geco_speedup: float = 10.0
    geco_tracks_validation: bool = True
    num_steps: int = _resumable(1_100_000)
    eval_every: int = 0
    log_every: int = _resumable(100)
    checkpoint_every: int = _resumable(5_000)
    keep_checkpoints: int = _resumable(3)
    early_stop_metric: str = ""
    early_stop_below: float = 0.0
    early_stop_min_improvement: float = 0.01
    micro_batch_size: int | str = "auto"
    seed_batching: str = _resumable("auto")
    data_parallel: int = _resumable(1)  # the same step on another split of the batch
    train_limit: int = 0
    valid_limit: int = 0
    progress: bool = _resumable(True)

    def __post_init__(self):
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        for key in ("num_steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints", "data_parallel"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")
        for key in ("lr_warmup_steps", "lr_decay_steps", "eval_every", "train_limit", "valid_limit"):
            if int(getattr(self, key)) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        for key in ("learning_rate", "adam_eps", "rmsprop_eps", "geco_goal", "geco_step_size", "geco_speedup"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a finite number > 0, got {value!r}")
        for key in ("adam_b1", "adam_b2", "geco_alpha", "rmsprop_decay", "early_stop_min_improvement"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key} must lie in [0, 1), got {getattr(self, key)!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr_schedule != "constant" and int(self.lr_decay_steps) < 1:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} decays over lr_decay_steps, which must be >= 1 "
                             f"(steps after the warm-up), got {self.lr_decay_steps!r}")
        if not (isinstance(self.grad_clip_norm, (int, float)) and math.isfinite(self.grad_clip_norm)
                and self.grad_clip_norm >= 0):
            raise ValueError(f"grad_clip_norm must be a finite number >= 0 (0: no clipping), got "
                             f"{self.grad_clip_norm!r}")
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must lie in [0, 1) (0: no moving average), got {self.ema_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.early_stop_metric and not self.early_stop_metric.startswith("valid/"):
            raise ValueError(f"early_stop_metric must name a validation metric ('valid/<name>'), got "
                             f"{self.early_stop_metric!r}")
        if self.seed_batching not in SEED_BATCHING:
            raise ValueError(f"seed_batching must be one of {SEED_BATCHING}, got {self.seed_batching!r}")
        if self.micro_batch_size != "auto":
            try:
                micro = int(self.micro_batch_size)
            except (TypeError, ValueError):
                micro = 0
            if micro < 1 or str(micro) != str(self.micro_batch_size).strip():
                raise ValueError(f"micro_batch_size must be 'auto' or an integer >= 1 (>= batch_size: one pass), "
                                 f"got {self.micro_batch_size!r}")
            object.__setattr__(self, "micro_batch_size", micro)
        if self.batch_size % self.data_parallel:
            raise ValueError(f"data_parallel={self.data_parallel} must divide batch_size={self.batch_size}")

    def __hash__(self):  # by value (the loss_weights mapping would make the generated hash fail)
        return hash(json.dumps(jsonable(dataclasses.asdict(self)), sort_keys=True))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def resumable_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("resumable"))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A parsed training config (`parse`): the engine's part, the model family, and the weight of every loss term.

    Attributes:
        engine: the engine's keys.
        family: the model family (its fields are its keys).
        weights: {term: weight} of every term the loss sums (the family's defaults under the config's
            `loss_weights`), resolved and checked once, here.
    """

    engine: TrainConfig
    family: Family
    weights: Mapping[str, float]

    def __hash__(self):  # by value (the weights mapping would make the generated hash fail)
        return hash((self.engine, self.family, tuple(sorted(self.weights.items()))))

    def as_dict(self) -> dict:
        """The flat config of a run (what `config.json` holds)."""
        return {**dataclasses.asdict(self.engine), **dataclasses.asdict(self.family)}

    def with_seeds(self, seeds: tuple[int, ...]) -> "RunConfig":
        """The same run with other seeds (e.g. one group of an experiment's seeds)."""
        return dataclasses.replace(self, engine=dataclasses.replace(self.engine, seeds=tuple(seeds)))

    def program_key(self) -> tuple:
        """What the compiled programs depend on: everything but the loss weights' values (they are an input of the
        step, `Trainer.programs`) and the loop's own keys (`LOOP_KEYS`: how long and how often), so runs with equal
        keys share their programs (an ablation's conditions; a run resumed with more steps)."""
        loop_free = dataclasses.replace(self.engine, loss_weights={}, **{k: TrainConfig.__dataclass_fields__[k].default
                                                                        for k in LOOP_KEYS})
        return (loop_free, self.family, tuple(sorted(self.weights)))


# Keys only the training loop reads (the compiled step and evaluation never see them).
LOOP_KEYS = ("num_steps", "log_every", "checkpoint_every", "keep_checkpoints", "progress")


def comparable(flat: Mapping[str, Any]) -> dict:
    """A flat config with `loss_weights` as the loss it gives: every term of the family's defaults and every other
    term of nonzero weight, each at its resolved weight. Two configs that differ only in how they spell the same loss
    (an absent term, or one listed at weight 0; a weight left None or set to the default) compare equal, so a run
    written before an ablation listed its zero-weight terms still resumes (`runlog.check_or_write_config`)."""
    flat = dict(flat)
    try:
        family = get_family(flat.get("model", TrainConfig.model))
        weights = resolve_weights(family.loss_terms, family.default_weights, flat.get("loss_weights"))
    except ValueError:
        return flat  # compared as written
    flat["loss_weights"] = {k: w for k, w in weights.items() if w != 0 or k in family.default_weights}
    return flat


def as_run_config(config: "RunConfig | Mapping[str, Any]") -> RunConfig:
    """`config` parsed (a flat mapping, at a library's public boundary) or as it is (already a `RunConfig`)."""
    return config if isinstance(config, RunConfig) else parse(config)


def parse(config: Mapping[str, Any]) -> RunConfig:
    """Validates a flat training config and splits it into the engine's part and the model family.

    Raises:
        ValueError: an unknown family or key (naming the closest known key), a bad value (naming key and value), or
            a loss weight for a term the family does not have.
    """
    config = dict(config)
    family_cls = get_family(config.get("model", TrainConfig.model))
    known = set(TrainConfig.keys()) | set(family_cls.config_keys())
    for key in config:
        if key not in known:
            raise ValueError(f"unknown config key {key!r}{closest(key, known)} for model {config.get('model')!r}")
    engine = TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.keys()})
    family = family_cls.from_config(config)
    weights = resolve_weights(family.loss_terms, family.default_weights, engine.loss_weights)
    return RunConfig(engine, family, weights)
