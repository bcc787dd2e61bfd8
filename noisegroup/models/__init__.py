"""Model families. `MODELS` maps a config's model name to its class."""

from noisegroup.models.autoencoder import AutoEncoder, BetaVAE, Decoder, Encoder

MODELS = {"ae": AutoEncoder, "vae": BetaVAE}

__all__ = ["MODELS", "AutoEncoder", "BetaVAE", "Decoder", "Encoder"]
