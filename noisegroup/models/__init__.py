"""Model families. `FAMILIES` maps a config's `model` name to its family (`noisegroup.models.family.Family`).

A family outside this package (a user's, the tests' toy one) joins with `register_family(name, cls)`; the engine
needs no edit.
"""

from noisegroup.models.autoencoder import AutoEncoder, AutoEncoderFamily, BetaVAE, BetaVAEFamily, Decoder, Encoder
from noisegroup.models.family import Family
from noisegroup.models.genesis import Genesis, GenesisFamily
from noisegroup.models.genesis_v2 import GenesisV2, GenesisV2Family
from noisegroup.models.monet import MONet, MonetFamily
from noisegroup.models.slot_attention import SlotAttentionAutoEncoder, SlotAttentionFamily

FAMILIES: dict[str, type[Family]] = {"ae": AutoEncoderFamily, "vae": BetaVAEFamily, "monet": MonetFamily,
                                     "genesis": GenesisFamily, "genesis_v2": GenesisV2Family,
                                     "slot_attention": SlotAttentionFamily}


def register_family(name: str, family: type[Family]) -> None:
    """Makes `family` available as config `model=name`.

    Raises:
        ValueError: the name is taken by another family, or `family` is not a `Family` subclass.
    """
    if not (isinstance(family, type) and issubclass(family, Family)):
        raise ValueError(f"{family!r} is not a subclass of noisegroup.models.family.Family")
    if FAMILIES.get(name, family) is not family:
        raise ValueError(f"model name {name!r} is already taken by {FAMILIES[name].__name__}")
    FAMILIES[name] = family


def get_family(name: str) -> type[Family]:
    """The family registered as `name`; ValueError listing the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "AutoEncoder", "AutoEncoderFamily", "BetaVAE", "BetaVAEFamily", "Decoder", "Encoder",
           "Family", "Genesis", "GenesisFamily", "GenesisV2", "GenesisV2Family", "MONet", "MonetFamily",
           "SlotAttentionAutoEncoder", "SlotAttentionFamily", "get_family", "register_family"]
