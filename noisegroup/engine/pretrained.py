"""Small trained weights to ship with the repository: float16 or int8 `.npz` files, one per (model, dataset).

    pretrained.save("pretrained/ae_kanizsa.npz", state.params, meta)   # params stacked over seeds [S, ...]
    pretrained.save(path, params, meta, precision="int8")               # half the size again
    params = pretrained.load("pretrained/ae_kanizsa.npz", train_config)   # float32, stacked over seeds

A file holds every parameter under its path in the parameter tree ("encoder/convs/0/kernel"), a JSON `meta`
(model, dataset, latent size, training config, steps) and `__digest__`, the SHA-256 of the meta and of every array
(name, dtype, shape, bytes). `load` (and the cheap `verify`, which LNS runs before any work) recomputes the digest,
so a flipped byte is an error naming the file, and checks what the file is: its model, dataset and latent size
against the config asked for, one seed axis shared by every parameter, the storage dtypes, finite values, and the
parameter names and shapes of the model the config builds (`verify` checks all of it too, from the model's shapes
alone). The loaded float32 weights define the model that is segmented, so LNS differences stay
exact for it. Writes are atomic (temporary file, fsync, rename).

Precisions:
    float16  every parameter: halves float32's size (the AE is 2.1 M parameters: 4.2 MB a seed), ~3 significant
             digits.
    int8     kernels (>= 2 axes besides the seed) as symmetric int8 with one float32 scale per seed and output
             channel (the last axis), stored as `__scale__/<name>`: w = q * scale, |q| <= 127, so each weight is
             within scale / 2 of the trained one (~0.4 % of its channel's largest); biases and norms stay float16.
             ~1 byte a parameter: the budget for shipping AE and VAE weights of all six datasets (README: the ARI
             is the same as with float16).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from noisegroup import atomic
from noisegroup.engine import config as engine_config
from noisegroup.errors import BadInputError, NotFoundError

FLOAT16_MAX = float(np.finfo(np.float16).max)
PRECISIONS = ("float16", "int8")
SCALE_PREFIX = "__scale__/"  # int8 kernels' per-output-channel scales: SCALE_PREFIX + the kernel's name
IDENTITY_FIELDS = ("model", "dataset", "latent_dim")  # what a file is; checked against the config asked for
# Training-config keys that do not change the function trained (how it was run, not the recipe): the rest of a
# file's training config must equal the config asked for.
NOT_RECIPE = ("data_dir", "seeds", "progress", "log_every", "checkpoint_every", "keep_checkpoints", "seed_batching",
              "data_parallel", "micro_batch_size", "conv_impl")


class WeightsFileError(BadInputError):
    """A shipped weights file that is damaged or not what the config asks for (a ValueError; one line at the
    command line)."""


def _path_name(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)


def quantise_int8(value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(q, scale) with value ~= q * scale: q int8 of value's shape [S, ..., C], scale float32 [S, 1, ..., 1, C]
    (one per seed and output channel, max |w| / 127; an all-zero channel gets scale 1 and q 0)."""
    value = np.asarray(value, np.float32)
    axes = tuple(range(1, value.ndim - 1))
    peak = np.abs(value).max(axis=axes, keepdims=True)
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    return np.clip(np.rint(value / scale), -127, 127).astype(np.int8), scale


def save(path: str | Path, params: Any, meta: Mapping[str, Any], precision: str = "float16") -> Path:
    """Writes `params` (an nnx parameter state stacked over seeds) at `precision` (module doc) with `meta`; returns
    the path.

    Raises:
        ValueError: `meta` without "model", "dataset" and "latent_dim", an unknown precision, a non-finite
            parameter, or one beyond float16's range.
    """
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))[0]
    return _write(Path(path), {_path_name(p): np.asarray(leaf, np.float32) for p, leaf in leaves}, meta, precision)


def convert(source: str | Path, target: str | Path, precision: str) -> Path:
    """Re-stores the weights file `source` at `precision` as `target` (same meta; int8 from float16 quantises the
    float16 values); returns the target path. Raises as `save`, and as `read_meta` for a damaged source."""
    meta, arrays = _read(Path(source))
    return _write(Path(target), _dequantised(arrays), meta, precision)


def _write(path: Path, values: Mapping[str, np.ndarray], meta: Mapping[str, Any], precision: str) -> Path:
    if precision not in PRECISIONS:
        raise WeightsFileError(f"precision={precision!r}: expected one of {PRECISIONS}")
    for field in IDENTITY_FIELDS:
        if field not in meta:
            raise WeightsFileError(f"meta needs {field!r} (to refuse loading into another model); got {sorted(meta)}")
    arrays = {}
    for name, value in values.items():
        if not np.all(np.isfinite(value)) or np.abs(value).max() > FLOAT16_MAX:
            raise WeightsFileError(f"parameter {name} has values float16 cannot hold (max |w| = {np.abs(value).max()})")
        if precision == "int8" and value.ndim >= 3:  # a kernel: seed axis, >= 1 input axis, output channels
            arrays[name], arrays[SCALE_PREFIX + name] = quantise_int8(value)
        else:
            arrays[name] = value.astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_json = json.dumps(dict(meta), sort_keys=True, default=str)
    seal = atomic.content_digest(meta_json, arrays)
    atomic.save_npz(path, __meta__=np.array(meta_json), __digest__=np.array(seal), **arrays)
    return path


def _dequantised(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A file's parameters as float32, by name (int8 kernels times their scales; the scales themselves dropped)."""
    return {name: (value.astype(np.float32) * arrays[SCALE_PREFIX + name] if value.dtype == np.int8
                   else value.astype(np.float32))
            for name, value in arrays.items() if not name.startswith(SCALE_PREFIX)}


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a weights file whose digest matches its content.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: unreadable, without a digest, or failing it.
    """
    if not path.exists():
        raise NotFoundError(f"no pretrained weights at {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            meta_json = str(f["__meta__"])
            stored_digest = str(f["__digest__"]) if "__digest__" in f.files else None
            arrays = {k: f[k] for k in f.files if k not in ("__meta__", "__digest__")}
        meta = json.loads(meta_json)
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, JSONDecodeError: all say "damaged"
        raise WeightsFileError(f"{path} is not a readable weights file ({type(e).__name__}: {e})") from e
    if stored_digest is None:
        raise WeightsFileError(f"{path} has no content digest (__digest__), so its weights cannot be trusted; "
                         "re-export it with `python -m experiments.export_pretrained`")
    if atomic.content_digest(meta_json, arrays) != stored_digest:
        raise WeightsFileError(f"{path} fails its SHA-256 content digest: the file was damaged after it was written")
    return meta, arrays


def read_meta(path: str | Path) -> dict:
    """The meta of a weights file, after checking its digest."""
    return _read(Path(path))[0]


def verify(path: str | Path, train_config: engine_config.RunConfig | Mapping[str, Any], image_shape=(64, 64, 3)) -> dict:
    """Checks, without building the model (its shapes only), that `path` is intact and holds what `train_config`
    asks for, everything `load` checks; returns its meta. LNS runs it on every file before any work, so a file
    that `load` would refuse is refused in one line, not after other (dataset, model) pairs have run.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and the field: damaged, another model / dataset / latent size, a dtype other
            than float16 or int8 (with its scale), non-finite values, parameters that disagree on the number of
            seeds, or parameters missing, unknown to the model or misshapen.
    """
    path = Path(path)
    meta, arrays = _read(path)
    run = engine_config.as_run_config(train_config)
    _check_identity(path, meta, arrays, run)
    _check_parameters(path, _dequantised(arrays), run, image_shape)
    return meta


def _abstract_params(family, image_shape: tuple[int, ...]) -> Any:
    """The parameter state of `family`'s model for `image_shape`, shapes only (`nnx.eval_shape`: nothing runs)."""
    abstract = nnx.eval_shape(lambda: family.build(image_shape, nnx.Rngs(params=jax.random.key(0))))
    return nnx.state(abstract, nnx.Param)


@functools.lru_cache(maxsize=16)
def _model_shapes(family, image_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} of `family`'s model for `image_shape` (cached: LNS verifies one file per dataset of
    each model)."""
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(_abstract_params(family, image_shape)))[0]
    return {_path_name(p): tuple(leaf.shape) for p, leaf in leaves}


def _check_parameters(path: Path, stored: Mapping[str, np.ndarray], run: engine_config.RunConfig, image_shape) -> None:
    """The file's parameters (`_dequantised`) are exactly the model's, each of its shape after the seed axis.

    Raises:
        ValueError: naming the file and the missing, unknown or misshapen parameter.
    """
    shapes = _model_shapes(run.family, tuple(image_shape))
    missing = [name for name in shapes if name not in stored]
    if missing:
        raise WeightsFileError(f"{path} lacks parameters {missing}")
    unknown = sorted(name for name in stored if name not in shapes)
    if unknown:
        raise WeightsFileError(f"{path} holds parameters {unknown} that the model does not have")
    for name, shape in shapes.items():
        if stored[name].shape[1:] != shape:
            raise WeightsFileError(f"{path}: parameter {name} has shape {stored[name].shape[1:]}, the model wants {shape}")


def _check_identity(path: Path, meta: Mapping, arrays: Mapping[str, np.ndarray], run: engine_config.RunConfig) -> None:
    asked = run.as_dict()
    for field in IDENTITY_FIELDS:
        if field not in meta:
            raise WeightsFileError(f"{path} does not say which {field} it holds (its meta has {sorted(meta)})")
        if field in asked and meta[field] != asked[field]:  # a family may lack a field (latent_dim)
            raise WeightsFileError(f"{path} holds {field}={meta[field]!r}, not the {field}={asked[field]!r} asked for")
    _check_recipe(path, meta, run)
    first_of_size: dict[int | None, str] = {}  # leading (seed) size -> the first parameter that has it
    for name, value in arrays.items():
        # `save` refuses non-finite weights, so only a file made otherwise holds them; a digest made with it cannot
        # tell. Caught here, a NaN names its array at once instead of surfacing as NaN features at clustering.
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise WeightsFileError(f"{path}: {name} holds non-finite values (NaN or inf), at index "
                             f"{np.argwhere(~np.isfinite(value))[0].tolist()}")
        if name.startswith(SCALE_PREFIX):
            kernel = arrays.get(name[len(SCALE_PREFIX):])
            if kernel is None or kernel.dtype != np.int8 or value.dtype != np.float32 or value.ndim != kernel.ndim:
                raise WeightsFileError(f"{path}: {name} is not the float32 scale of an int8 kernel")
            continue
        if value.dtype == np.int8:
            scale = arrays.get(SCALE_PREFIX + name)
            want = value.shape[:1] + (1,) * (value.ndim - 2) + value.shape[-1:]
            if scale is None or scale.shape != want:
                raise WeightsFileError(f"{path}: int8 parameter {name} needs a scale of shape {want} "
                                 f"({SCALE_PREFIX}{name}), found {None if scale is None else scale.shape}")
        elif value.dtype != np.float16:
            raise WeightsFileError(f"{path}: parameter {name} is {value.dtype}, shipped weights are float16 or int8")
        first_of_size.setdefault(value.shape[0] if value.ndim else None, name)
    if len(first_of_size) > 1:
        sizes = ", ".join(f"{name} has {size}" for size, name in first_of_size.items())
        raise WeightsFileError(f"{path}: parameters disagree on the number of seeds (leading axis: {sizes})")


def _check_recipe(path: Path, meta: Mapping, run: engine_config.RunConfig) -> None:
    """The file's training recipe (its meta's "train", defaults filled in) must be the one `run` names."""
    if "train" not in meta:
        return  # a file saved without its recipe (tests' toy files): nothing to compare

    def recipe(run: engine_config.RunConfig) -> dict:
        return {**run.as_dict(), "loss_weights": run.weights}  # None: the family's weight

    try:
        stored = recipe(engine_config.parse({k: v for k, v in meta["train"].items() if k not in NOT_RECIPE}))
    except ValueError as error:
        raise WeightsFileError(f"{path} was trained with a recipe this version cannot read ({error})") from None
    asked = recipe(run)
    for key in sorted(set(stored) | set(asked)):
        if key not in NOT_RECIPE and stored.get(key) != asked.get(key):
            raise WeightsFileError(f"{path} was trained with {key}={stored.get(key)!r}, not the {key}={asked.get(key)!r} "
                             f"of the config (shipped weights must come from the recipe the config names)")


def load(path: str | Path, train_config: engine_config.RunConfig | Mapping[str, Any], image_shape=(64, 64, 3)) -> Any:
    """The float32 parameters in `path`, stacked over seeds, for the model a training config describes.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: damaged (`verify`), another model, dataset or latent size, or missing or
            misshapen parameters.
    """
    path = Path(path)
    meta, arrays = _read(path)
    run = engine_config.as_run_config(train_config)
    _check_identity(path, meta, arrays, run)
    stored = _dequantised(arrays)
    _check_parameters(path, stored, run, image_shape)
    params = _abstract_params(run.family, tuple(image_shape))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(params))
    values = [jnp.asarray(stored[_path_name(p)]) for p, _ in leaves]
    nnx.replace_by_pure_dict(params, jax.tree_util.tree_unflatten(treedef, values))
    return params
