"""A toy model family outside the library (a 16-unit MLP autoencoder), registered as "tiny": the engine tests train,
resume and restore it, and the fault tests damage its runs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from noisegroup.models import register_family
from noisegroup.models.family import Family


class TinyMLP(nnx.Module):
    """Flatten -> dense 16 -> ReLU -> dense to the image: a few dozen parameters' worth of autoencoder."""

    def __init__(self, image_shape, hidden: int, *, rngs: nnx.Rngs):
        size = int(np.prod(image_shape))
        self.image_shape = tuple(image_shape)
        self.encode = nnx.Linear(size, hidden, rngs=rngs)
        self.decode = nnx.Linear(hidden, size, rngs=rngs)

    def __call__(self, images, noise):
        h = jax.nn.relu(self.encode(images.reshape(len(images), -1)))
        if noise is not None:
            h = h + noise
        return self.decode(h).reshape(len(images), *self.image_shape)


@dataclasses.dataclass(frozen=True)
class TinyFamily(Family):
    """A third family, outside the library: its own config key (`hidden`), loss terms and noise."""

    hidden: int = 8
    noise_std: float = 0.0
    bias_from_data: bool = False  # start the decoder's bias at the training images' mean (an `init_data` hook)

    loss_terms = {"mse": lambda o: jnp.mean((o["reconstruction"] - o["images"]) ** 2, axis=(1, 2, 3)),
                  "l1_code": lambda o: jnp.zeros(len(o["images"]))}
    default_weights = {"mse": 1.0}

    def build(self, image_shape, rngs):
        return TinyMLP(image_shape, self.hidden, rngs=rngs)

    def init_data(self, train):
        return np.mean(train["images"], axis=0).reshape(-1) if self.bias_from_data else None

    def initialise(self, model, init_data):
        if init_data is not None:
            model.decode.bias[...] = jnp.asarray(init_data)

    def sample_noise(self, key, batch):
        if not self.noise_std:
            return None
        return self.noise_std * jax.random.normal(key, (len(batch["images"]), self.hidden))

    def outputs(self, model, batch, noise):
        return {"images": batch["images"], "reconstruction": model(batch["images"], noise)}

    def eval_metrics(self, outputs, batch):
        return {"mse": jnp.mean((outputs["reconstruction"] - outputs["images"]) ** 2)}


register_family("tiny", TinyFamily)


def tiny_config(**overrides):
    config = dict(model="tiny", dataset="noise", seeds=(0, 1), batch_size=4, learning_rate=1e-2, num_steps=6,
                  eval_every=3, log_every=3, checkpoint_every=3, progress=False, hidden=8)
    config.update(overrides)
    return config


def tiny_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train [32, 16, 16, 1], valid [8, 16, 16, 1]) uniform images in [0, 1)."""
    rng = np.random.default_rng(seed)
    return rng.random((32, 16, 16, 1), np.float32), rng.random((8, 16, 16, 1), np.float32)
