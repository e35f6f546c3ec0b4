"""The known zoos: name -> family, summary, and where the hub copy lives (if published).

This module is data only (no torch, no network), so that ``import weightzoo`` stays cheap.
The generating specs themselves live in :mod:`weightzoo.generate` and are looked up by the same
names; a zoo is *published* once its ``hub_repo`` and pinned ``revision`` are filled in here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from weightzoo.errors import UnknownZooError

_ALL_CONFIGS = ("seed", "hyp-10-rand", "hyp-10-fix")
# Table 1 of the Model Zoos paper (plus the offline digits zoos): (dataset, architecture) ->
# configurations. tests/test_catalog.py keeps this in step with the generator's specs.
_IMAGE_ZOOS: dict[tuple[str, str], tuple[str, ...]] = {
    ("mnist", "cnn-s"): _ALL_CONFIGS,
    ("fashion-mnist", "cnn-s"): _ALL_CONFIGS,
    ("svhn", "cnn-s"): _ALL_CONFIGS,
    ("usps", "cnn-s"): _ALL_CONFIGS,
    ("cifar10", "cnn-s"): _ALL_CONFIGS,
    ("cifar10", "cnn-m"): _ALL_CONFIGS,
    ("stl10", "cnn-s"): _ALL_CONFIGS,
    ("stl10", "cnn-m"): _ALL_CONFIGS,
    ("digits", "cnn-s"): ("seed", "hyp-10-rand"),
    ("cifar10", "resnet18"): ("seed",),
    ("cifar100", "resnet18"): ("seed",),
    ("tiny-imagenet", "resnet18"): ("seed",),
}
_TRAJECTORY_ZOOS = (("mnist", "mlp"), ("mnist", "cnn"), ("digits", "mlp"), ("digits", "cnn"))
_PROPERTY_ZOOS = {
    "property-synthetic": "Property inference: MLPs on synthetic data, property share 0.0-1.0",
    "property-digits-even": "Property inference: MLPs on digits, share of even digits 0.0-1.0",
}
_VIT_ZOOS = {
    "vit-digits": "ViTs pre-trained on digits (supervised, SimCLR) and fine-tuned, with lineage",
    "vit-zoo-paper": "ViT-S pre-trained on ImageNet-1k, fine-tuned on CIFAR-100 (250 models)",
}

_PINN_ZOOS = {
    "phase-pinn-convection": "Phase zoo: PINNs on 1-D convection, beta x learning rate, small",
    "phase-pinn-convection-paper": "Phase zoo: PINNs on 1-D convection, 10 beta x 14 lr x 5 seeds",
}

_RESNET_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256)
# Phase-transition grids (dataset, architecture) -> widths: the grid is a grouped zoo, each
# width also a zoo of its own (``<grid>-w<width>``).
_PHASE_GRIDS: dict[tuple[str, str], tuple[int, ...]] = {
    ("digits", "cnn"): (2, 4, 8, 16, 32),
    ("digits", "mlp"): (2, 4, 8, 16, 32),
    **{
        (dataset, arch): _RESNET_WIDTHS
        for arch in ("resnet18", "resnet50")
        for dataset in ("svhn", "cifar10", "cifar100", "tiny-imagenet")
    },
    ("cifar10", "vit"): (6, 12, 24, 48, 60, 96, 192),
    ("cifar100", "vit"): (6, 12, 24, 48, 60, 96, 192),
}

# tiny-LM phase grids: name -> (summary, model dimensions; one version-1 zoo per dimension)
_TINYLM_ZOOS = {
    "phase-tinylm": (
        "Phase transitions: byte-level GPT-style LMs on Python's docs, model_dim x batch size",
        (8, 16, 32, 64),
    ),
    "phase-gpt2-openwebtext": (
        "Phase transitions: GPT-2 on OpenWebText, model_dim x batch size (data not bundled)",
        (8, 16, 32, 64, 128, 256, 512, 1024),
    ),
}


@dataclass(frozen=True)
class CatalogEntry:
    """One known zoo.

    Attributes:
        name: the zoo's name (also its spec name and default directory name).
        family: ``mlds``, ``modelzoo``, ``trajectory``, ``property``, ``phase``, ``pinn``,
            ``tinylm`` or ``vit`` (grouped).
        summary: one line for ``weightzoo list``.
        hub_repo: Hugging Face dataset repo id, or ``None`` while unpublished.
        revision: pinned commit of ``hub_repo`` (``None`` while unpublished).
    """

    name: str
    family: str
    summary: str
    hub_repo: str | None = None
    revision: str | None = None

    @property
    def published(self) -> bool:
        """Whether a hub copy is known."""
        return self.hub_repo is not None


def _entries() -> list[CatalogEntry]:
    entries = [
        CatalogEntry("mlds-ds1", "mlds", "MLDS DS1: GRUs mimicking 5 simple machines"),
        CatalogEntry("mlds-ds2", "mlds", "MLDS DS2: the DS1 machines with a backdoor trigger"),
        CatalogEntry("mlds-ds3", "mlds", "MLDS DS3: LSTMs mimicking random automata"),
    ]
    entries += [
        CatalogEntry(f"{entry.name}-paper", "mlds", f"{entry.summary} (Table 3 sizes)")
        for entry in list(entries)
    ]
    for (dataset, architecture), configs in _IMAGE_ZOOS.items():
        entries += [
            CatalogEntry(
                f"modelzoo-{dataset}-{architecture}-{config}",
                "modelzoo",
                f"Model Zoos: {architecture.upper()} on {dataset}, {config} configuration",
            )
            for config in configs
        ]
    entries += [
        CatalogEntry(
            f"trajectory-{dataset}-{architecture}",
            "trajectory",
            f"Training trajectories: {architecture.upper()} on {dataset}, every epoch",
        )
        for dataset, architecture in _TRAJECTORY_ZOOS
    ]
    entries += [CatalogEntry(name, "property", summary) for name, summary in _PROPERTY_ZOOS.items()]
    entries += [CatalogEntry(name, "vit", summary) for name, summary in _VIT_ZOOS.items()]
    entries += [CatalogEntry(name, "pinn", summary) for name, summary in _PINN_ZOOS.items()]
    for (dataset, architecture), widths in _PHASE_GRIDS.items():
        what = f"Phase transitions: {architecture.upper()} on {dataset}"
        entries.append(
            CatalogEntry(
                f"phase-{dataset}-{architecture}",
                "phase",
                f"{what}, width x batch size x 3 seeds, one group per width",
            )
        )
        entries += [
            CatalogEntry(f"phase-{dataset}-{architecture}-w{w}", "phase", f"{what}, width {w}")
            for w in widths
        ]
    for name, (summary, dims) in _TINYLM_ZOOS.items():
        entries.append(CatalogEntry(name, "tinylm", f"{summary}, all {len(dims)} dimensions"))
        entries += [CatalogEntry(f"{name}-d{d}", "tinylm", f"{summary}, d={d}") for d in dims]
    return entries


def _known() -> dict[str, CatalogEntry]:
    return {entry.name: entry for entry in _entries()}


def entries() -> list[CatalogEntry]:
    """Every catalog entry, in listing order."""
    return list(_known().values())


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``.

    Raises:
        UnknownZooError: with the closest names when ``name`` is unknown.
    """
    known = _known()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownZooError(f"no known zoo named {name!r}.{hint} Run `weightzoo list` for all zoos.")
