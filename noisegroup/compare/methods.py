"""The methods and datasets of the cross-method comparison, and the published numbers beside ours.

A method name says what segments and how:
    lns_<model>_<clustering>   LNS with the AE or beta-VAE ("ae" | "vae"), its features clustered by "ward" (the
                               reference's), "complete", "kmeans", "estimated" (Ward with k estimated without the
                               ground truth, `noisegroup.lns.num_groups`) or "tangent" (Ward on the tangent-limit
                               features: the decoder's Jacobian rows, no sigma or N)
    control_<model>            the noisy-reconstruction control (paper Table 1's "Rec." rows), Ward
    monet, slot_attention,     a model with masks, trained by the engine; its segmentation is the argmax of its masks
    genesis, genesis_v2        (MONet's attention, Slot Attention's alpha, GENESIS / GENESIS-v2's IC-SBP masks)
The clustering ablation the LNS paper's reviewers asked for is the set of lns_<model>_* rows of one model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

from datasets import good_gestalt as gg
from noisegroup.checks import closest

LNS_MODELS = ("ae", "vae")
LNS_CLUSTERINGS = ("ward", "complete", "kmeans", "estimated", "tangent")
MASK_FAMILIES = ("monet", "slot_attention", "genesis", "genesis_v2")
METHODS = (tuple(f"lns_{m}_{c}" for m in LNS_MODELS for c in LNS_CLUSTERINGS)
           + tuple(f"control_{m}" for m in LNS_MODELS) + MASK_FAMILIES)
DATASETS = gg.NAMES + ("multi_dsprites",)
LABELS = {"monet": "MONet (NLL+M)", "slot_attention": "Slot Attention", "genesis": "GENESIS",
          "genesis_v2": "GENESIS-v2"}


@dataclasses.dataclass(frozen=True)
class Method:
    """A parsed method name.

    Attributes:
        name: as written (one of `METHODS`).
        kind: "lns", "control" or "masks".
        model: the model family trained or loaded ("ae" | "vae" for LNS and the control; the family name otherwise).
        clustering: for LNS: one of `LNS_CLUSTERINGS`; the control's "ward"; "" for mask families.
    """

    name: str
    kind: str
    model: str
    clustering: str = ""

    @property
    def label(self) -> str:
        """The table's name of the method."""
        if self.kind == "masks":
            return LABELS[self.model]
        if self.kind == "control":
            return f"{self.model.upper()} Rec. (control)"
        return f"LNS {self.model.upper()}, {self.clustering}"


def parse_method(name: str) -> Method:
    """The `Method` of a name.

    Raises:
        ValueError: an unknown name, naming the closest and the valid ones.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}{closest(name, METHODS)}; known: {', '.join(METHODS)}")
    if name in MASK_FAMILIES:
        return Method(name, "masks", name)
    if name.startswith("control_"):
        return Method(name, "control", name.removeprefix("control_"), "ward")
    _, model, clustering = name.split("_", 2)
    return Method(name, "lns", model, clustering)


def check_dataset(name: str) -> str:
    """`name` if it is one of `DATASETS`.

    Raises:
        ValueError: naming the closest and the valid ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}{closest(name, DATASETS)}; known: {', '.join(DATASETS)}")
    return name


@functools.cache
def _paper() -> dict:
    return json.loads((Path(__file__).parent / "paper_values.json").read_text())


def paper_value(method: str, dataset: str, metric: str = "ari") -> tuple[float | None, str]:
    """(the published value, its source) of a method on a dataset for "ari" or "ari_fg"; (None, "") where no paper
    has one. Sources and caveats (data variant, statistic) are in `paper_values.json`."""
    for entry in _paper()["values"]:
        if entry["method"] == method and entry["dataset"] == dataset and entry["metric"] == metric:
            return float(entry["value"]), entry["source"]
    return None, ""
