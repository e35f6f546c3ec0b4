"""The known zoos: name -> family, summary, and where each zoo's bytes can come from.

This module is data only (no torch, no network), so that ``import weightzoo`` and
``weightzoo list`` read it cheaply. Each entry lists its *sources* in the order
``weightzoo fetch NAME`` tries them (:attr:`CatalogEntry.sources`):

1. a Hugging Face Hub copy (:class:`HubCopy`), once ``hub_repo`` and its pinned ``revision`` are
   filled in here;
2. the original release: a Zenodo record of Model Zoos zips (:class:`ZenodoRelease`) or a
   Small CNN Zoo ``tar.xz`` in a public bucket (:class:`BucketRelease`);
3. generation from the spec (:class:`Generation`), offline or from named data files.

The generating specs live in :mod:`weightzoo.generate` under the same names; the families of
:mod:`weightzoo.families` list their own zoos (``spec.py``'s ``listings()``). File names inside
a Zenodo record are never written here: a :class:`FileMatch` says which names fit a zoo, and the
fetch reads the names from the record's listing at run time.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, ClassVar

from weightzoo import families
from weightzoo.errors import UnknownZooError

# -- where the published zoos come from --------------------------------------------------------


@dataclass(frozen=True)
class Citation:
    """A paper to cite for a source.

    Attributes:
        title: the paper's title.
        authors: its authors, in order.
        venue: where it appeared.
        arxiv: its arXiv id.
    """

    title: str
    authors: str
    venue: str
    arxiv: str

    def __str__(self) -> str:
        return f'{self.authors}, "{self.title}", {self.venue}, arXiv:{self.arxiv}'


MODEL_ZOOS = Citation(
    "Model Zoos: A Dataset of Diverse Populations of Neural Network Models",
    "Konstantin Schürholt, Diyar Taskiran, Boris Knyazev, Xavier Giró-i-Nieto, Damian Borth",
    "NeurIPS 2022 Datasets and Benchmarks",
    "2209.14764",
)
SANE = Citation(
    "Towards Scalable and Versatile Weight Space Learning",
    "Konstantin Schürholt, Michael W. Mahoney, Damian Borth",
    "ICML 2024",
    "2406.09997",
)
SMALL_CNN_ZOO = Citation(
    "Predicting Neural Network Accuracy from Weights",
    "Thomas Unterthiner, Daniel Keysers, Sylvain Gelly, Olivier Bousquet, Ilya Tolstikhin",
    "arXiv preprint 2020",
    "2002.11448",
)
NFN = Citation(
    "Permutation Equivariant Neural Functionals",
    "Allan Zhou, Kaien Yang, Kaylee Burns, Adriano Cardace, Yiding Jiang, Samuel Sokota, "
    "J. Zico Kolter, Chelsea Finn",
    "NeurIPS 2023",
    "2302.14040",
)


@dataclass(frozen=True)
class FileMatch:
    """Which file of a record holds a zoo, judged by the name the record's listing gives.

    A name is normalised first: lower case, its suffix dropped, each run of characters other
    than letters and digits turned into ``_``, and ``_`` added at both ends
    (``CIFAR_large-seed.zip`` -> ``_cifar_large_seed_``). It fits when :func:`re.search` finds
    every ``needs`` pattern and no ``avoid`` pattern in it.

    Attributes:
        needs: patterns that must all be found.
        avoid: patterns none of which may be found.
    """

    needs: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()

    def fits(self, key: str) -> bool:
        """Whether the file name ``key`` fits."""
        name = "_" + re.sub(r"[^a-z0-9]+", "_", PurePosixPath(key).stem.lower()).strip("_") + "_"
        return all(re.search(p, name) for p in self.needs) and not any(
            re.search(p, name) for p in self.avoid
        )

    def __and__(self, other: FileMatch) -> FileMatch:
        return FileMatch(self.needs + other.needs, self.avoid + other.avoid)


@dataclass(frozen=True)
class HubCopy:
    """A copy of the zoo in weightzoo's format on the Hugging Face Hub.

    Attributes:
        repo: the dataset repo id.
        revision: the pinned commit (``None``: the default branch).
    """

    repo: str
    revision: str | None = None
    kind: ClassVar[str] = "hub"

    @property
    def where(self) -> str:
        """The repo id."""
        return self.repo


@dataclass(frozen=True)
class ZenodoRelease:
    """An original release on Zenodo: the record and which of its files holds the zoo.

    Attributes:
        record: a concept id (every version; the fetch reads the latest) or a version id.
        files: which file names of the record's listing fit the zoo.
        license: the release's licence.
        cite: the papers to cite.
        size: the download's size in bytes, where a published number is known (``None``: read
            from the listing at run time only).
        note: what else to know about the release.
    """

    record: str
    files: FileMatch = FileMatch()
    license: str = "CC-BY-4.0"
    cite: tuple[Citation, ...] = (MODEL_ZOOS,)
    size: int | None = None
    note: str = ""
    kind: ClassVar[str] = "zenodo"

    @property
    def where(self) -> str:
        """``zenodo:RECORD``."""
        return f"zenodo:{self.record}"


@dataclass(frozen=True)
class BucketRelease:
    """An original release as one archive at a plain HTTP(S) address (a public bucket).

    Attributes:
        url: the archive's address (``WEIGHTZOO_HTTP_MIRROR`` may replace its scheme and host).
        split_csv_url: a published train/val/test split of the models, where one exists.
        license: the release's licence.
        cite: the papers to cite.
        size: the download's size in bytes, where a published number is known.
        note: what else to know about the release.
    """

    url: str
    split_csv_url: str | None = None
    license: str = "CC-BY-4.0"
    cite: tuple[Citation, ...] = (SMALL_CNN_ZOO,)
    size: int | None = None
    note: str = ""
    kind: ClassVar[str] = "bucket"

    @property
    def where(self) -> str:
        """The archive's address."""
        return self.url


@dataclass(frozen=True)
class Generation:
    """Training the zoo from its spec with ``weightzoo generate NAME``.

    Attributes:
        data: the data sets whose files the generator reads (empty: it runs offline).
    """

    data: tuple[str, ...] = ()
    kind: ClassVar[str] = "generate"

    @property
    def offline(self) -> bool:
        """Whether it needs no files from outside."""
        return not self.data

    def describe(self) -> str:
        """``offline``, or which data files it needs and how to point at them."""
        if self.offline:
            return "offline, from its spec"
        return (
            f"needs the {' and '.join(self.data)} data files: pass --data-dir DIR or set "
            "WEIGHTZOO_DATA_DIR"
        )


Release = ZenodoRelease | BucketRelease
Source = HubCopy | ZenodoRelease | BucketRelease | Generation

_CNN_MATCH = r"_(?:small|cnn_?s)_"
_CNN_M_MATCH = r"_(?:large|medium|cnn_?[lm])_"
# Model Zoos configuration -> the file names of its zips (Seed, Hyp-10-rand, Hyp-10-fix).
_CONFIG_FILES = {
    "seed": FileMatch(needs=(r"_seed",), avoid=(r"_hyp", r"rand", r"fix")),
    "hyp-10-rand": FileMatch(needs=(r"_hyp", r"rand")),
    "hyp-10-fix": FileMatch(needs=(r"_hyp", r"fix")),
}
# Architectures told apart only where one record holds both (CIFAR-10, STL-10: CNN-s, CNN-m).
_ARCHITECTURE_FILES = {
    "cnn-s": FileMatch(needs=(_CNN_MATCH,), avoid=(_CNN_M_MATCH,)),
    "cnn-m": FileMatch(needs=(_CNN_M_MATCH,)),
}
# Zenodo concept records of the Model Zoos' raw zips, from the projects' READMEs: dataset ->
# (record, the architectures whose zips it holds).
_CNN_RECORDS = {
    "mnist": ("6632086", ("cnn-s",)),
    "fashion-mnist": ("6632104", ("cnn-s",)),
    "svhn": ("6632120", ("cnn-s",)),
    "usps": ("6633626", ("cnn-s",)),
    "cifar10": ("6620868", ("cnn-s", "cnn-m")),
    "stl10": ("6631783", ("cnn-s", "cnn-m")),
}
_RESNET_RECORDS = {"cifar10": "6974028", "cifar100": "6977381", "tiny-imagenet": "7023277"}
_RESNET_NOTE = (
    "the squeezed release (the full checkpoints are published on Google Drive, not fetched)"
)
_SPARSE_RECORDS = {"mnist": "7023335", "svhn": "7027566"}
_SANE_SAMPLE_RECORD = "13144018"  # a version record: cifar10_cnn_sample_ep21-25.zip
_SMALL_CNN_BUCKET = "https://storage.googleapis.com/gresearch/smallcnnzoo-dataset"
_NFN_SPLITS = (
    "https://raw.githubusercontent.com/AllanYangZhou/nfn/main/experiments/predict_gen_data_splits"
)
# catalog name -> bucket object, with the NFN split file where one is published
_SMALL_CNN_ZOOS = {
    "mnist": ("mnist", None),
    "fashion-mnist": ("fashion_mnist", None),
    "cifar10": ("cifar10", "cifar10"),
    "svhn": ("svhn_cropped", "svhn"),
}
# From the Small CNN Zoo's README: 30k networks per data set, 9 checkpoints, 4970 parameters.
_SMALL_CNN_FACTS = {"models": 30_000, "checkpoints": 9, "params": 4970}


@dataclass(frozen=True)
class CatalogEntry:
    """One known zoo.

    Attributes:
        name: the zoo's name (also its spec name and default directory name).
        family: ``mlds``, ``modelzoo``, ``trajectory``, ``property``, ``phase``, ``pinn``,
            ``tinylm``, ``vit`` (grouped) or ``smallcnnzoo``.
        summary: one line for ``weightzoo list``.
        hub_repo: Hugging Face dataset repo id, or ``None`` while unpublished.
        revision: pinned commit of ``hub_repo`` (``None`` while unpublished).
        release: the original release, or ``None`` for zoos only weightzoo generates.
        generation: how ``weightzoo generate NAME`` builds it, or ``None`` without a spec.
        models: published model count, for zoos without a spec (``None``: unknown).
        checkpoints: published checkpoints per model, for zoos without a spec.
        params: published parameters per model, for zoos without a spec.
    """

    name: str
    family: str
    summary: str
    hub_repo: str | None = None
    revision: str | None = None
    release: Release | None = None
    generation: Generation | None = None
    models: int | None = None
    checkpoints: int | None = None
    params: int | None = None

    @property
    def published(self) -> bool:
        """Whether a hub copy is known."""
        return self.hub_repo is not None

    @property
    def fetchable(self) -> bool:
        """Whether ``weightzoo fetch NAME`` can get it: a hub copy or an original release."""
        return self.published or self.release is not None

    @property
    def sources(self) -> tuple[Source, ...]:
        """Where the zoo's bytes can come from, in the order ``weightzoo fetch`` tries them."""
        hub = (HubCopy(self.hub_repo, self.revision),) if self.hub_repo is not None else ()
        release = (self.release,) if self.release is not None else ()
        generation = (self.generation,) if self.generation is not None else ()
        return (*hub, *release, *generation)

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON data (for ``weightzoo list --json``)."""
        sources: list[dict[str, Any]] = []
        for source in self.sources:
            item: dict[str, Any] = {"kind": source.kind}
            if isinstance(source, Generation):
                item |= {"command": f"weightzoo generate {self.name}", "data": list(source.data)}
            elif isinstance(source, HubCopy):
                item |= {"repo": source.repo, "revision": source.revision}
            else:
                item |= _release_json(source)
            sources.append(item)
        return {
            "name": self.name,
            "family": self.family,
            "summary": self.summary,
            "sources": sources,
            "models": self.models,
            "checkpoints": self.checkpoints,
            "params": self.params,
        }


def _release_json(release: Release) -> dict[str, Any]:
    item: dict[str, Any] = {"where": release.where}
    if isinstance(release, ZenodoRelease):
        item |= {"record": release.record, "needs": list(release.files.needs)}
        item |= {"avoid": list(release.files.avoid)}
    else:
        item |= {"url": release.url, "split_csv_url": release.split_csv_url}
    return item | {
        "size": release.size,
        "license": release.license,
        "cite": [str(c) for c in release.cite],
        "note": release.note or None,
    }


def _model_zoos_releases() -> dict[str, ZenodoRelease]:
    """The original release of each Model Zoos zoo that has one, by the zoo's name."""
    out = {}
    for dataset, (record, architectures) in _CNN_RECORDS.items():
        for architecture, (config, files) in itertools.product(
            architectures, _CONFIG_FILES.items()
        ):
            if len(architectures) > 1:
                files = files & _ARCHITECTURE_FILES[architecture]
            out[f"modelzoo-{dataset}-{architecture}-{config}"] = ZenodoRelease(record, files)
    for dataset, record in _RESNET_RECORDS.items():
        out[f"modelzoo-{dataset}-resnet18-seed"] = ZenodoRelease(record, note=_RESNET_NOTE)
    return out


_RELEASES: dict[str, Release] = _model_zoos_releases()
"""The original release of each listed zoo that has one, by the zoo's name."""


def _published_only() -> list[CatalogEntry]:
    """Zoos that weightzoo fetches but has no spec for: twins, samples, the Small CNN Zoo."""
    entries = [
        CatalogEntry(
            f"modelzoo-{dataset}-cnn-s-sparse",
            "modelzoo",
            f"Model Zoos: sparsified twins of the CNN-s zoos on {dataset} (variational dropout)",
            release=ZenodoRelease(record),
        )
        for dataset, record in _SPARSE_RECORDS.items()
    ]
    entries.append(
        CatalogEntry(
            "modelzoo-cifar10-cnn-sample",
            "modelzoo",
            "Model Zoos: a CIFAR-10 CNN sample, epochs 21-25 (SANE's example data)",
            release=ZenodoRelease(
                _SANE_SAMPLE_RECORD, FileMatch(needs=("_sample_",)), cite=(MODEL_ZOOS, SANE)
            ),
        )
    )
    for name, (obj, split) in _SMALL_CNN_ZOOS.items():
        release = BucketRelease(
            f"{_SMALL_CNN_BUCKET}/{obj}.tar.xz",
            f"{_NFN_SPLITS}/{split}_split.csv" if split else None,
            cite=(SMALL_CNN_ZOO, NFN) if split else (SMALL_CNN_ZOO,),
        )
        entries.append(
            CatalogEntry(
                f"smallcnnzoo-{name}",
                "smallcnnzoo",
                f"Small CNN Zoo: 30k small CNNs on {name}, 9 checkpoints each",
                release=release,
                **_SMALL_CNN_FACTS,
            )
        )
    return entries


def _entries() -> list[CatalogEntry]:
    return _family_entries() + _published_only()


def _family_entries() -> list[CatalogEntry]:
    """What the families of :mod:`weightzoo.families` list (their torch-free ``spec.py``)."""
    return [
        CatalogEntry(
            listing.name,
            family,
            listing.summary,
            release=_RELEASES.get(listing.name),
            generation=Generation(listing.data),
        )
        for family, listing in families.listings()
    ]


def find(name: str) -> CatalogEntry | None:
    """The entry called ``name``, or ``None``."""
    return _known().get(name)


def _known() -> dict[str, CatalogEntry]:
    return {entry.name: entry for entry in _entries()}


def entries() -> list[CatalogEntry]:
    """Every catalog entry, in listing order."""
    return list(_known().values())


def how_to_get(name: str, dest: str | None = None) -> str:
    """Advice on getting the zoo ``name`` into ``dest``: only commands that can work.

    A zoo with a hub copy or an original release is fetched (``weightzoo fetch``); a zoo with a
    spec is generated (``weightzoo generate``); an unknown name gets the closest known names.
    """
    entry = find(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_known()), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return f"No zoo spec or published zoo is named {name!r}{hint}; `weightzoo list` names them."
    ways = []
    if entry.fetchable:
        option = "--local-dir" if entry.published else "--out"
        into = f" {option} {dest}" if dest else ""
        ways.append(f"fetch it with `weightzoo fetch {name}{into}`")
    if entry.generation is not None:
        into = f" --out {dest}" if dest else ""
        ways.append(f"generate it with `weightzoo generate {name}{into}`")
    return "You can " + " or ".join(ways) + "."


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
