"""Small trained weights to ship with the repository: float16 `.npz` files, one per (model, dataset).

    pretrained.save("pretrained/ae_kanizsa.npz", state.params, meta)   # params stacked over seeds [S, ...]
    params = pretrained.load("pretrained/ae_kanizsa.npz", train_config)   # float32, stacked over seeds

A file holds every parameter as float16 under its path in the parameter tree ("encoder/convs/0/kernel"), and a
JSON `meta` (model, dataset, latent size, training config, steps). float16 halves float32's size (the AE is 2.1 M
parameters: 4.2 MB a seed) and keeps ~3 significant digits; the loaded float32 weights define the model that is
segmented, so LNS differences stay exact for it. Writes are atomic (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from noisegroup import atomic

FLOAT16_MAX = float(np.finfo(np.float16).max)


def _path_name(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def save(path: str | Path, params: Any, meta: Mapping[str, Any]) -> Path:
    """Writes `params` (an nnx parameter state stacked over seeds) as float16 with `meta`; returns the path.

    Raises:
        ValueError: `meta` without "model" and "latent_dim", a non-finite parameter, or one beyond float16's range.
    """
    for field in ("model", "latent_dim"):
        if field not in meta:
            raise ValueError(f"meta needs {field!r} (to refuse loading into another model); got {sorted(meta)}")
    arrays = {}
    for leaf_path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]:
        name, value = _path_name(leaf_path), np.asarray(leaf, np.float32)
        if not np.all(np.isfinite(value)) or np.abs(value).max() > FLOAT16_MAX:
            raise ValueError(f"parameter {name} has values float16 cannot hold (max |w| = {np.abs(value).max()})")
        arrays[name] = value.astype(np.float16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.save_npz(path, __meta__=np.array(json.dumps(dict(meta), sort_keys=True, default=str)), **arrays)
    return path


def read_meta(path: str | Path) -> dict:
    with np.load(path) as f:
        return json.loads(str(f["__meta__"]))


def load(path: str | Path, train_config: Mapping[str, Any], image_shape=(64, 64, 3)) -> Any:
    """The float32 parameters in `path`, stacked over seeds, for the model a training config describes.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file of another model, dataset or latent size, or with missing or misshapen parameters.
    """
    from noisegroup.engine import config as engine_config

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no pretrained weights at {path}")
    try:
        with np.load(path) as f:
            meta = json.loads(str(f["__meta__"]))
            stored = {k: f[k] for k in f.files if k != "__meta__"}
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, JSONDecodeError: all say "damaged"
        raise ValueError(f"{path} is not a readable weights file ({type(e).__name__}: {e})") from e
    for field in ("model", "dataset", "latent_dim"):
        if field in meta and field in train_config and meta[field] != train_config[field]:
            raise ValueError(f"{path} holds {field}={meta[field]!r}, not the {field}={train_config[field]!r} asked for")
    _, family = engine_config.parse(train_config)
    abstract = nnx.eval_shape(lambda: family.build(tuple(image_shape), nnx.Rngs(params=jax.random.key(0))))
    params = nnx.state(abstract, nnx.Param)  # shapes only
    leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))
    missing = [_path_name(p) for p, _ in leaves if _path_name(p) not in stored]
    if missing:
        raise ValueError(f"{path} lacks parameters {missing}")
    values = []
    for leaf_path, leaf in leaves:
        name, value = _path_name(leaf_path), stored[_path_name(leaf_path)]
        if value.dtype != np.float16:
            raise ValueError(f"{path}: parameter {name} is {value.dtype}, shipped weights are float16")
        if value.shape[1:] != leaf.shape:
            raise ValueError(f"{path}: parameter {name} has shape {value.shape[1:]}, the model wants {leaf.shape}")
        values.append(jnp.asarray(value, jnp.float32))
    nnx.replace_by_pure_dict(params, jax.tree_util.tree_unflatten(treedef, values))
    return params
