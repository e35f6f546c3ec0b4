"""Where the image datasets of the image zoos come from, and where their files go on disk.

One table, :data:`IMAGE_DATASETS`: for each dataset the canonical download addresses, the file
names, the md5 each dataset's publisher (or the widely used loaders) give, the sizes where known,
and what each download becomes on disk; and the folders :mod:`weightzoo.imagesets.readers`
searches. ``weightzoo data fetch NAME`` (:mod:`weightzoo.sources.datafetch`) reads it to
download; the readers read it to find the files. Data only, plus the lookups over it: no torch,
no HTTP client.

Layout: a download of kind ``"file"`` is stored as ``<data_dir>/<name>/<file>``; an archive
(``"tar"``, ``"zip"``) is extracted there and its folder ``home`` moved into place, e.g.
``<data_dir>/cifar10/cifar-10-batches-bin/data_batch_1.bin``; the archive itself is removed.
"""

from __future__ import annotations

import difflib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from weightzoo.errors import InvalidOptionError

__all__ = [
    "IDX_STEMS",
    "IMAGE_DATASETS",
    "Download",
    "ImageDataset",
    "canonical",
    "default_data_dir",
    "fetch_command",
    "locate",
    "search_dirs",
]


@dataclass(frozen=True)
class Download:
    """One file to download.

    Attributes:
        urls: where to get it, canonical address first; later ones are mirrors tried when an
            earlier one refuses or is unreachable (``WEIGHTZOO_HTTP_MIRROR`` applies to each).
        file: the file's name as published.
        md5: its published md5 (lower-case hex).
        size: its size in bytes where known.
        kind: ``"file"`` (kept as is), ``"tar"`` or ``"zip"`` (extracted, then removed).
        provides: the files it yields, relative to ``<data_dir>/<name>`` (an archive: inside
            the dataset's ``home`` folder); the first name of each entry is where it lands,
            the others are accepted alternatives (an unpacked ``.gz``).
        max_bytes: for a file of unknown ``size``, the most bytes a server may send for it
            (every file has one or the other, so no download is unbounded).
    """

    urls: tuple[str, ...]
    file: str
    md5: str
    size: int | None
    kind: str
    provides: tuple[tuple[str, ...], ...]
    max_bytes: int | None = None


@dataclass(frozen=True)
class ImageDataset:
    """A dataset's files: where they are searched, where they come from.

    Attributes:
        name: canonical name (``weightzoo data fetch NAME``).
        title: what the dataset is, for listings.
        home: folder the unpacked distribution creates (``""``: files sit directly in the
            dataset folder).
        aliases: other names of the ``<data_dir>/<name>`` folder (torchvision's, ...).
        extra: further sub-folders searched (torchvision's ``raw``).
        downloads: the files to download.
        where: how to get the files by hand, in words.
    """

    name: str
    title: str
    home: str
    aliases: tuple[str, ...]
    extra: tuple[str, ...]
    downloads: tuple[Download, ...]
    where: str

    @property
    def needs(self) -> tuple[tuple[str, ...], ...]:
        """Every file the reader needs (alternatives per file), relative to a search folder."""
        return tuple(alt for d in self.downloads for alt in d.provides)

    @property
    def archives(self) -> tuple[str, ...]:
        """Names of the archives, whose presence unextracted earns a hint."""
        return tuple(d.file for d in self.downloads if d.kind != "file")

    @property
    def size(self) -> int | None:
        """Bytes to download in all (``None`` where a size is unknown)."""
        sizes = [d.size for d in self.downloads]
        return None if None in sizes else sum(s for s in sizes if s is not None)


IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four IDX files of an MNIST-like dataset (each served gzipped), in reading order."""


# The MNIST-like datasets' IDX files: (md5, size) per IDX_STEMS.
_IDX_FILES: dict[str, tuple[tuple[str, int], ...]] = {
    # md5s: torchvision's MNIST.resources; sizes: the MNIST page (yann.lecun.com/exdb/mnist).
    "mnist": (
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),  # train images
        ("d53e105ee54ea40749a09fcbcd1e9432", 28881),  # train labels
        ("9fb629c4189551a2d022fa330f9573f3", 1648877),  # test images
        ("ec29112dd5afa0611ce80d1b7f02629c", 4542),  # test labels
    ),
    # md5s: the download table of the zalandoresearch/fashion-mnist README (the same md5s as
    # torchvision's FashionMNIST.resources); sizes: as served there.
    "fashion-mnist": (
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),  # train images
        ("25c81989df183df01b3e8a0aad5dffbe", 29515),  # train labels
        ("bef4ecab320f06d8554ea6380940ec79", 4422102),  # test images
        ("bb300cfdad3c16e7a12a480ee83cd310", 5148),  # test labels
    ),
}


def _idx(base: str, name: str) -> tuple[Download, ...]:
    """The four gzipped IDX files of the MNIST-like dataset ``name``, served at ``base``.

    Args:
        base: the folder addresses that serve them, space-separated, canonical one first.
        name: the dataset's key in ``_IDX_FILES``.
    """
    return tuple(
        Download(
            tuple(b + stem + ".gz" for b in base.split()),
            stem + ".gz",
            md5,
            size,
            "file",
            ((stem + ".gz", stem),),
        )
        for stem, (md5, size) in zip(IDX_STEMS, _IDX_FILES[name], strict=True)
    )


# The second MNIST address is the mirror torchvision falls back to. Fashion-MNIST's: the
# download table of the zalandoresearch/fashion-mnist README.
_MNIST = "http://yann.lecun.com/exdb/mnist/ https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_KRIZ = "https://www.cs.toronto.edu/~kriz/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"
_LIBSVM = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
# A generous bound on each USPS file, whose size is not published (see its entry).
_USPS_MAX_BYTES = 64 << 20

IMAGE_DATASETS: dict[str, ImageDataset] = {
    "mnist": ImageDataset(
        "mnist",
        "MNIST (LeCun, Cortes, Burges)",
        "",
        ("MNIST",),
        ("raw",),
        _idx(_MNIST, "mnist"),
        "the four .gz files of the MNIST database (Yann LeCun's 'THE MNIST DATABASE of "
        "handwritten digits' page at yann.lecun.com/exdb/mnist, or one of its mirrors)",
    ),
    "fashion-mnist": ImageDataset(
        "fashion-mnist",
        "Fashion-MNIST (Xiao, Rasul, Vollgraf, arXiv:1708.07747)",
        "",
        ("fashion_mnist", "FashionMNIST", "fashion"),
        ("raw", "data/fashion"),
        _idx(_FASHION, "fashion-mnist"),
        "the four .gz files in data/fashion of the zalandoresearch/fashion-mnist GitHub repository",
    ),
    "cifar10": ImageDataset(
        "cifar10",
        "CIFAR-10 (Krizhevsky 2009)",
        "cifar-10-batches-bin",
        ("cifar-10", "CIFAR10"),
        (),
        # md5: the 'binary version' row of the CIFAR page (www.cs.toronto.edu/~kriz/cifar.html);
        # size: as served there.
        (
            Download(
                (_KRIZ + "cifar-10-binary.tar.gz",),
                "cifar-10-binary.tar.gz",
                "c32a1d4ab5d03f1284b67883e8d87530",
                170052171,
                "tar",
                (*((f"data_batch_{i}.bin",) for i in range(1, 6)), ("test_batch.bin",)),
            ),
        ),
        "'CIFAR-10 binary version (suitable for C programs)', cifar-10-binary.tar.gz, on Alex "
        "Krizhevsky's CIFAR page (www.cs.toronto.edu/~kriz/cifar.html); extract it",
    ),
    "cifar100": ImageDataset(
        "cifar100",
        "CIFAR-100 (Krizhevsky 2009)",
        "cifar-100-binary",
        ("cifar-100", "CIFAR100"),
        (),
        # md5: the CIFAR-100 'binary version' row of the CIFAR page; size: as served there.
        (
            Download(
                (_KRIZ + "cifar-100-binary.tar.gz",),
                "cifar-100-binary.tar.gz",
                "03b5dce01913d631647c71ecec9e9cb8",
                168513733,
                "tar",
                (("train.bin",), ("test.bin",)),
            ),
        ),
        "'CIFAR-100 binary version (suitable for C programs)', cifar-100-binary.tar.gz, on Alex "
        "Krizhevsky's CIFAR page (www.cs.toronto.edu/~kriz/cifar.html); extract it",
    ),
    "svhn": ImageDataset(
        "svhn",
        "SVHN cropped digits (Netzer et al. 2011)",
        "",
        ("SVHN",),
        (),
        # md5s: torchvision's SVHN.split_list; sizes: as served by ufldl.stanford.edu.
        (
            Download(
                (_SVHN + "train_32x32.mat",),
                "train_32x32.mat",
                "e26dedcc434d2e4c54c9b2d4a06d8373",
                182040794,
                "file",
                (("train_32x32.mat",),),
            ),
            Download(
                (_SVHN + "test_32x32.mat",),
                "test_32x32.mat",
                "eb5a983be6a315427106f1b164d9cef3",
                64275384,
                "file",
                (("test_32x32.mat",),),
            ),
        ),
        "train_32x32.mat and test_32x32.mat, 'Format 2: Cropped Digits' on the Street View "
        "House Numbers page (ufldl.stanford.edu/housenumbers)",
    ),
    "usps": ImageDataset(
        "usps",
        "USPS (Hull 1994), LIBSVM copy",
        "",
        ("USPS",),
        (),
        # md5s: torchvision's USPS.split_list. The LIBSVM page publishes no sizes: the files
        # hold 7,291 and 2,007 images of 256 values as text, a few MB once bz2-compressed, so
        # _USPS_MAX_BYTES bounds what a server may send instead.
        (
            Download(
                (_LIBSVM + "usps.bz2",),
                "usps.bz2",
                "ec16c51db3855ca6c91edd34d0e9b197",
                None,
                "file",
                (("usps.bz2", "usps"),),
                max_bytes=_USPS_MAX_BYTES,
            ),
            Download(
                (_LIBSVM + "usps.t.bz2",),
                "usps.t.bz2",
                "8ea070ee2aca1ac39742fdd1ef5ed118",
                None,
                "file",
                (("usps.t.bz2", "usps.t"),),
                max_bytes=_USPS_MAX_BYTES,
            ),
        ),
        "usps.bz2 and usps.t.bz2, the 'usps' entry of the multi-class section of the LIBSVM "
        "Data page (www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets)",
    ),
    "stl10": ImageDataset(
        "stl10",
        "STL-10 (Coates, Lee, Ng 2011)",
        "stl10_binary",
        ("stl-10", "STL10"),
        (),
        # md5: torchvision's STL10.tgz_md5; size: as served by ai.stanford.edu.
        (
            Download(
                ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",),
                "stl10_binary.tar.gz",
                "91f7769df0f17e558f3565bffb0c7dfb",
                2640397119,
                "tar",
                (("train_X.bin",), ("train_y.bin",), ("test_X.bin",), ("test_y.bin",)),
            ),
        ),
        "the binary files, stl10_binary.tar.gz, on Adam Coates' STL-10 dataset page "
        "(cs.stanford.edu/~acoates/stl10); extract it",
    ),
    "tiny-imagenet": ImageDataset(
        "tiny-imagenet",
        "Tiny ImageNet (Le, Yang; Stanford CS231n)",
        "tiny-imagenet-200",
        ("tiny_imagenet", "tinyimagenet", "TinyImageNet"),
        (),
        # md5: the one the widely used loaders check (e.g. ContinualAI/avalanche's
        # TinyImagenet); size: as served by cs231n.stanford.edu.
        (
            Download(
                ("http://cs231n.stanford.edu/tiny-imagenet-200.zip",),
                "tiny-imagenet-200.zip",
                "90528d7ca1a48142e341f4ef8d21d0de",
                248100043,
                "zip",
                (("wnids.txt",), ("val/val_annotations.txt",)),
            ),
        ),
        "tiny-imagenet-200.zip from the Tiny ImageNet challenge of Stanford's CS231n "
        "(cs231n.stanford.edu); unzip it",
    ),
}
"""Every image dataset that can be downloaded, by canonical name."""


DATA_DIR_ENV = "WEIGHTZOO_DATA_DIR"


def default_data_dir() -> Path:
    """The directory searched (and downloaded into) when no data directory is given.

    Returns:
        ``$WEIGHTZOO_DATA_DIR`` if set, else ``~/.cache/weightzoo/data``.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "weightzoo" / "data"


def fetch_command(name: str, root: Path) -> str:
    """The shell command that downloads ``name`` into the data directory ``root``.

    ``--data-dir`` is left out where ``root`` is the default data directory.
    """
    command = f"weightzoo data fetch {name}"
    if os.path.abspath(root) != os.path.abspath(default_data_dir()):
        command += f" --data-dir {shlex.quote(str(root))}"
    return command


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


_ALIASES = {
    **{_key(n): n for n in IMAGE_DATASETS},
    "fmnist": "fashion-mnist",
    "stl": "stl10",
    "tinyimagenet200": "tiny-imagenet",
}


def canonical(name: str) -> str:
    """The canonical name of a downloadable dataset (case, ``-`` and ``_`` do not matter).

    Raises:
        InvalidOptionError: ``name`` is not one of :data:`IMAGE_DATASETS`.
    """
    found = _ALIASES.get(_key(name))
    if found is not None:
        return found
    if _key(name) == "digits":
        raise InvalidOptionError(
            "'digits' needs no download (it ships with scikit-learn); use it as it is"
        )
    close = difflib.get_close_matches(name.lower(), list(IMAGE_DATASETS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InvalidOptionError(
        f"unknown image dataset {name!r}; `weightzoo data list` shows the datasets that can be "
        f"downloaded: {', '.join(IMAGE_DATASETS)}{hint}"
    )


def search_dirs(root: Path, name: str) -> list[Path]:
    """Folders searched for ``name``'s files, most specific first, without duplicates.

    ``root``, ``root/<name>`` and ``root/<alias>``; in each, the ``home`` folder of the unpacked
    distribution and the ``extra`` sub-folders before the folder itself.
    """
    dataset = IMAGE_DATASETS[name]
    bases = [root, root / name, *(root / a for a in dataset.aliases)]
    subs = [s for s in (dataset.home, *dataset.extra) if s]
    out: list[Path] = []
    for base in bases:
        out += [base / sub for sub in subs]
        out.append(base)
    seen: set[Path] = set()
    return [d for d in out if not (d in seen or seen.add(d))]


def locate(
    name: str, root: Path, wanted: tuple[tuple[str, ...], ...] | None = None
) -> tuple[list[Path | None], list[Path]]:
    """Find each wanted file (alternatives per file) in the search folders.

    Args:
        name: canonical dataset name.
        root: the data directory.
        wanted: the files (default: the dataset's :attr:`ImageDataset.needs`).

    Returns:
        ``(found, dirs)``: per wanted file the path found (``None``: in no folder), and the
        folders searched.
    """
    dirs = search_dirs(root, name)
    wanted = IMAGE_DATASETS[name].needs if wanted is None else wanted
    found = [
        next((d / a for d in dirs for a in alternatives if (d / a).is_file()), None)
        for alternatives in wanted
    ]
    return found, dirs
