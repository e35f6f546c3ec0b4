"""Readers for the image classification datasets the image zoos are trained on.

Every reader parses a dataset's standard distribution files from a local directory; nothing is
ever downloaded. Images come back as float32 tensors ``[N, C, H, W]`` scaled to ``[0, 1]``;
normalisation (mean/std) is left to the caller. See the "Image data" section of
``docs/modelzoo.md`` for the expected files of each dataset, the label mapping and the scaling.

The ``digits`` dataset (scikit-learn's bundled 8x8 handwritten digits) needs no files at all and
is the offline default for tests and examples.

Example:
    >>> data = load_image_data("digits")  # doctest: +SKIP
    >>> data.train_x.shape  # doctest: +SKIP
    torch.Size([1438, 1, 28, 28])
"""

from __future__ import annotations

import bz2
import difflib
import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from weightzoo.errors import DataFilesMissingError
from weightzoo.sources.datasets import (
    IDX_STEMS,
    IMAGE_DATASETS,
    default_data_dir,
    fetch_command,
    locate,
    search_dirs,
)

__all__ = [
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "ImageData",
    "default_data_dir",
    "load_image_data",
    "split_validation",
]

DATASETS: tuple[str, ...] = (
    "mnist",
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "svhn",
    "usps",
    "stl10",
    "tiny-imagenet",
    "digits",
)
"""Names :func:`load_image_data` accepts (aliases such as ``"cifar-10"`` also work)."""

DIGITS_SPLIT_SEED = 0
"""Seed of the stratified 80/20 train/test split of ``digits``."""

_CHUNK = 2048  # images converted (scaled, greyscaled, resized) at a time, to bound memory
_MAX_LISTED = 20  # missing files listed one by one before "... and N more"


@dataclass(frozen=True, eq=False)
class ImageData:
    """A dataset's train and test images and labels, fully in memory.

    Attributes:
        name: canonical dataset name (one of :data:`DATASETS`).
        train_x: float32 ``[N, C, H, W]`` in ``[0, 1]``, not normalised.
        train_y: int64 ``[N]`` class indices in ``[0, num_classes)``.
        test_x: float32 ``[M, C, H, W]`` in ``[0, 1]``.
        test_y: int64 ``[M]``.
        num_classes: number of classes.
        channels: ``C`` (1 or 3).
        size: ``H == W``.
        classes: class names where the files name them (Tiny ImageNet wnids), else digits
            ``"0"``..``"9"`` or indices as strings.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    channels: int
    size: int
    classes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"ImageData(name={self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"num_classes={self.num_classes}, channels={self.channels}, size={self.size})"
        )


# --------------------------------------------------------------------------------------------
# Locating files (the folders and the download table: weightzoo.sources.datasets)
# --------------------------------------------------------------------------------------------

_ALIASES: dict[str, str] = {
    "mnist": "mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "svhn": "svhn",
    "usps": "usps",
    "stl10": "stl10",
    "stl": "stl10",
    "tinyimagenet": "tiny-imagenet",
    "tinyimagenet200": "tiny-imagenet",
    "digits": "digits",
}


def _canonical(name: str) -> str:
    """Canonical dataset name of ``name`` (case, ``-`` and ``_`` do not matter)."""
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(name.lower(), DATASETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown image dataset {name!r}; known: {', '.join(DATASETS)}.{hint}")


def _listed(items: Sequence[str]) -> str:
    """``a, b, c`` with at most :data:`_MAX_LISTED` items, then ``... and N more``."""
    text = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        text += f", ... and {len(items) - _MAX_LISTED} more"
    return text


def _missing_error(
    name: str, root: Path, missing: Sequence[str], *, damaged: Path | None = None
) -> DataFilesMissingError:
    """The one-line :class:`DataFilesMissingError` for ``name``'s ``missing`` files.

    It names the files, the folders searched (or the ``damaged`` copy, whose other files were
    found), an archive found but not extracted, the command that downloads the files, and
    where to get them by hand. The error's ``dataset`` attribute holds ``name``.
    """
    dataset = IMAGE_DATASETS[name]
    command = fetch_command(name, root)
    parts = [f"{name}: {len(missing)} required file(s) missing under {root}: {_listed(missing)}"]
    if damaged is not None:
        parts.append(f"the copy in {damaged} is incomplete: remove it and run `{command}`")
    else:
        dirs = search_dirs(root, name)
        parts.append("searched: " + ", ".join(str(d) for d in dirs))
        parts += [
            f"found the archive {d / a}: extract it in {d}"
            for d in dirs
            for a in dataset.archives
            if (d / a).is_file()
        ]
        parts.append(f"run `{command}` to download them into {root / name}")
    parts.append(f"or get {dataset.where} (weightzoo never downloads image data unasked)")
    error = DataFilesMissingError("; ".join(parts))
    error.dataset = name  # type: ignore[attr-defined]  # lets `generate` offer --download
    return error


def _locate(name: str, root: Path, wanted: Sequence[Sequence[str]]) -> list[Path]:
    """Find each wanted file, given as alternative relative names, in the search directories.

    Args:
        name: canonical dataset name.
        root: the data directory.
        wanted: one entry per file; each entry lists acceptable relative names, preferred first
            (e.g. the ``.gz`` and the unpacked form).

    Returns:
        The path found for each entry, in order.

    Raises:
        DataFilesMissingError: listing every file that was found in no search directory, as a
            full path under the dataset's usual folder.
    """
    found, _ = locate(name, root, tuple(tuple(a) for a in wanted))
    home = root / IMAGE_DATASETS[name].home
    missing = [
        str(home / alternatives[0])
        + (f" (or {', '.join(alternatives[1:])})" if len(alternatives) > 1 else "")
        for alternatives, hit in zip(wanted, found, strict=True)
        if hit is None
    ]
    if missing:
        raise _missing_error(name, root, missing)
    return [hit for hit in found if hit is not None]


def _read_bytes(path: Path) -> bytes:
    """All bytes of ``path``, decompressed by its suffix (``.gz``, ``.bz2``).

    Raises:
        ValueError: the compressed stream is corrupt or truncated.
    """
    suffix = path.suffix
    try:
        if suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        if suffix == ".bz2":
            with bz2.open(path, "rb") as fh:
                return fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: cannot decompress ({exc}); the file is corrupt or truncated"
        ) from exc
    return path.read_bytes()


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise ValueError naming ``path`` if a label is outside ``[0, num_classes)``."""
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{path}: labels must decode to 0..{num_classes - 1}, found "
            f"{int(labels.min())}..{int(labels.max())}"
        )


def _check_same_count(images: np.ndarray, labels: np.ndarray, xpath: Path, ypath: Path) -> None:
    if len(images) != len(labels):
        raise ValueError(
            f"{xpath} holds {len(images)} images but {ypath} holds {len(labels)} labels"
        )


# --------------------------------------------------------------------------------------------
# Format readers; each returns (uint8 or float images [N, C, H, W], int64 labels [N])
# --------------------------------------------------------------------------------------------

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file (the MNIST format): magic ``00 00 <type> <ndim>``, big-endian dims.

    Args:
        path: the file, ``.gz`` or unpacked.
        ndim: the number of dimensions expected (3 for images, 1 for labels).

    Returns:
        The array, shape as the header says.

    Raises:
        ValueError: wrong magic, unexpected ``ndim``, or a size that does not match the header.
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero, code, nd = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic 0x{raw[:4].hex()}; expected 0x0000{0x08:02x}"
            f"{ndim:02x})"
        )
    if nd != ndim:
        raise ValueError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says {dims} ({expected} data bytes) but the file holds "
            f"{len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _read_mnist_like(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """MNIST / Fashion-MNIST IDX files: ``[N, 1, 28, 28]`` uint8 and labels 0..9."""
    paths = _locate(name, root, [(stem + ".gz", stem) for stem in IDX_STEMS])
    out = []
    for xpath, ypath in ((paths[0], paths[1]), (paths[2], paths[3])):
        x = _read_idx(xpath, 3)
        y = _read_idx(ypath, 1)
        if x.dtype != np.uint8 or y.dtype != np.uint8:
            raise ValueError(f"{xpath}, {ypath}: expected unsigned-byte IDX data")
        _check_same_count(x, y, xpath, ypath)
        _check_labels(y, 10, ypath)
        out.append((x[:, None], y.astype(np.int64)))
    return tuple(out)


def _read_records(path: Path, label_bytes: int, shape: tuple[int, ...]) -> np.ndarray:
    """Fixed-size records of ``label_bytes`` label bytes followed by a uint8 image."""
    raw = _read_bytes(path)
    record = label_bytes + int(np.prod(shape))
    if len(raw) == 0 or len(raw) % record:
        raise ValueError(
            f"{path}: {len(raw)} bytes is not a positive multiple of the {record}-byte record "
            "size; the file is truncated or not in the binary format"
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)


def _read_cifar(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """CIFAR-10 / CIFAR-100 binary versions: channel-planar RGB 32x32 records."""
    if name == "cifar10":
        train_files = [f"data_batch_{i}.bin" for i in range(1, 6)]
        test_files = ["test_batch.bin"]
        label_bytes, label_col, classes = 1, 0, 10
    else:
        train_files, test_files = ["train.bin"], ["test.bin"]
        label_bytes, label_col, classes = 2, 1, 100  # coarse, fine: use fine
    paths = _locate(name, root, [(f,) for f in train_files + test_files])
    splits = (paths[: len(train_files)], paths[len(train_files) :])
    out = []
    for files in splits:
        xs, ys = [], []
        for path in files:
            rec = _read_records(path, label_bytes, (3, 32, 32))
            y = rec[:, label_col].astype(np.int64)
            _check_labels(y, classes, path)
            xs.append(rec[:, label_bytes:].reshape(-1, 3, 32, 32))
            ys.append(y)
        out.append((np.concatenate(xs), np.concatenate(ys)))
    return tuple(out)


def _read_stl10(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """STL-10 binary: uint8 images stored channel by channel, each channel column-major."""
    paths = _locate(
        name, root, [("train_X.bin",), ("train_y.bin",), ("test_X.bin",), ("test_y.bin",)]
    )
    out = []
    for xpath, ypath in ((paths[0], paths[1]), (paths[2], paths[3])):
        raw = _read_bytes(xpath)
        per_image = 3 * 96 * 96
        if len(raw) == 0 or len(raw) % per_image:
            raise ValueError(
                f"{xpath}: {len(raw)} bytes is not a positive multiple of {per_image} "
                "(3x96x96); the file is truncated"
            )
        # Stored as [N, C, W, H] (column-major planes): swap the last two axes.
        x = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
        y = np.frombuffer(_read_bytes(ypath), dtype=np.uint8).astype(np.int64) - 1
        _check_same_count(x, y, xpath, ypath)
        _check_labels(y, 10, ypath)
        out.append((x, y))
    return tuple(out)


def _read_usps_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One LIBSVM-format USPS file: ``label idx:value ...``, labels 1..10, values in [-1, 1]."""
    text = _read_bytes(path).decode("ascii", "replace")
    rows: list[np.ndarray] = []
    labels: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            label = float(parts[0])
            feats = np.zeros(256, dtype=np.float32)  # LIBSVM: an absent feature is 0
            for item in parts[1:]:
                idx, val = item.split(":", 1)
                i = int(idx)
                if not 1 <= i <= 256:
                    raise ValueError(f"feature index {i} outside 1..256")
                feats[i - 1] = float(val)
        except ValueError as exc:
            raise ValueError(f"{path}, line {lineno}: not a LIBSVM USPS line ({exc})") from None
        if label != int(label) or not 1 <= label <= 10:
            raise ValueError(f"{path}, line {lineno}: label {parts[0]!r} outside 1..10")
        labels.append(int(label) - 1)
        rows.append(feats)
    if not rows:
        raise ValueError(f"{path}: no samples (empty or truncated file)")
    x = (np.stack(rows).reshape(-1, 1, 16, 16) + 1.0) / 2.0
    return np.clip(x, 0.0, 1.0, out=x), np.asarray(labels, dtype=np.int64)


def _read_usps(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """USPS LIBSVM files ``usps.bz2`` / ``usps.t.bz2``: float images already in [0, 1]."""
    paths = _locate(name, root, [("usps.bz2", "usps"), ("usps.t.bz2", "usps.t")])
    return tuple(_read_usps_file(p) for p in paths)


def _read_svhn(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """SVHN cropped digits, MATLAB v5 files: ``X [32, 32, 3, N]``, ``y [N, 1]`` with 10 for 0."""
    paths = _locate(name, root, [("train_32x32.mat",), ("test_32x32.mat",)])
    try:
        from scipy import io as sio
    except ImportError as exc:
        raise ImportError(
            "reading SVHN's .mat files needs scipy: pip install scipy "
            "(or pip install 'weightzoo[data]' where that extra is available)"
        ) from exc
    out = []
    for path in paths:
        try:
            mat = sio.loadmat(path, variable_names=("X", "y"))
        except Exception as exc:  # scipy raises assorted errors on bad files
            raise ValueError(f"{path}: not a readable MATLAB v5 file ({exc})") from exc
        if "X" not in mat or "y" not in mat:
            raise ValueError(f"{path}: expected variables 'X' and 'y', found {sorted(mat)}")
        xm, ym = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
        if xm.ndim != 4 or xm.shape[:3] != (32, 32, 3):
            raise ValueError(f"{path}: X has shape {xm.shape}, expected (32, 32, 3, N)")
        x = np.ascontiguousarray(xm.transpose(3, 2, 0, 1)).astype(np.uint8, copy=False)
        y = ym.astype(np.int64)
        y[y == 10] = 0
        _check_same_count(x, y, path, path)
        _check_labels(y, 10, path)
        out.append((x, y))
    return tuple(out)


def _read_tiny_annotations(path: Path) -> list[tuple[str, str]]:
    """Parse Tiny ImageNet's ``val/val_annotations.txt``: ``file<TAB>wnid<TAB>x y w h``.

    Returns:
        ``(file name, wnid)`` pairs in file order.

    Raises:
        ValueError: a line with fewer than two tab-separated fields.
    """
    pairs: list[tuple[str, str]] = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2 or not fields[0] or not fields[1]:
            raise ValueError(
                f"{path}, line {lineno}: expected 'file<TAB>wnid<TAB>box', got {line!r}"
            )
        pairs.append((fields[0].strip(), fields[1].strip()))
    return pairs


def _read_tiny_imagenet(name: str, root: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Tiny ImageNet folders; the labelled ``val`` split serves as the test split."""
    wnids_path, ann_path = _locate(name, root, [("wnids.txt",), ("val/val_annotations.txt",)])
    base = wnids_path.parent
    wnids = sorted({w.strip() for w in wnids_path.read_text().split() if w.strip()})
    if not wnids:
        raise ValueError(f"{wnids_path}: no class ids")
    index = {w: i for i, w in enumerate(wnids)}
    train: list[tuple[Path, int]] = []
    missing: list[str] = []
    for w in wnids:
        files = sorted((base / "train" / w / "images").glob("*.JPEG"))
        if not files:
            missing.append(str(base / "train" / w / "images" / "*.JPEG"))
        train += [(f, index[w]) for f in files]
    test: list[tuple[Path, int]] = []
    for fname, w in _read_tiny_annotations(ann_path):
        if w not in index:
            raise ValueError(f"{ann_path}: class {w!r} of {fname} is not in {wnids_path}")
        path = base / "val" / "images" / fname
        if not path.is_file():
            missing.append(str(path))
        test.append((path, index[w]))
    if missing:
        raise _missing_error(name, root, missing, damaged=base)
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "decoding Tiny ImageNet's JPEG files needs Pillow: pip install 'weightzoo[images]'"
        ) from exc

    def decode(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
        x = np.empty((len(items), 3, 64, 64), dtype=np.uint8)
        for k, (path, _) in enumerate(items):
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except OSError as exc:
                raise ValueError(f"{path}: cannot decode image ({exc})") from exc
            if arr.shape != (64, 64, 3):
                raise ValueError(f"{path}: image is {arr.shape}, expected 64x64 RGB")
            x[k] = arr.transpose(2, 0, 1)
        return x, np.asarray([c for _, c in items], dtype=np.int64)

    return decode(train), decode(test), tuple(wnids)


def _load_digits() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Scikit-learn's 8x8 digits (values 0..16) scaled to [0, 1], stratified 80/20 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the 'digits' dataset needs scikit-learn: pip install scikit-learn"
        ) from exc
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test_idx = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        test_idx.append(rng.permutation(members)[: round(0.2 * len(members))])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_idx)] = True
    return (x[~is_test], y[~is_test]), (x[is_test], y[is_test])


_READERS: dict[str, Callable[[str, Path], tuple[tuple[np.ndarray, np.ndarray], ...]]] = {
    "mnist": _read_mnist_like,
    "fashion-mnist": _read_mnist_like,
    "cifar10": _read_cifar,
    "cifar100": _read_cifar,
    "svhn": _read_svhn,
    "usps": _read_usps,
    "stl10": _read_stl10,
    "tiny-imagenet": _read_tiny_imagenet,
}
_NUM_CLASSES = {"cifar100": 100, "tiny-imagenet": 200}
_NATIVE_SIZE = {"digits": 28}  # digits are upsampled from 8x8 to 28x28 like MNIST


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------

_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's convert("L")


def _convert(images: np.ndarray, *, size: int, grayscale: bool) -> torch.Tensor:
    """Scale to float32 [0, 1], optionally grey-scale, and resize, a chunk at a time.

    Args:
        images: uint8 (scaled by 1/255) or float (already in [0, 1]) ``[N, C, H, W]``.
        size: target side; resized with bilinear interpolation (antialiased when shrinking).
        grayscale: collapse RGB to one luma channel.

    Returns:
        float32 ``[N, C', size, size]``, contiguous.
    """
    n, c, h, w = images.shape
    out_c = 1 if grayscale else c
    out = torch.empty((n, out_c, size, size), dtype=torch.float32)
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
    for start in range(0, n, _CHUNK):
        # a copy: readers return read-only views of file bytes, which torch warns about
        chunk = torch.from_numpy(np.array(images[start : start + _CHUNK], copy=True))
        chunk = chunk.to(torch.float32)
        if scale != 1.0:
            chunk.mul_(scale)
        if grayscale and c == 3:
            chunk = torch.einsum("nchw,c->nhw", chunk, _LUMA)[:, None]
        if (h, w) != (size, size):
            chunk = F.interpolate(
                chunk,
                size=(size, size),
                mode="bilinear",
                align_corners=False,
                antialias=size < max(h, w),
            )
        out[start : start + len(chunk)] = chunk.clamp_(0.0, 1.0)
    return out


def load_image_data(
    name: str,
    data_dir: str | Path | None = None,
    *,
    resize: int | None = None,
    grayscale: bool = False,
) -> ImageData:
    """Read a dataset's standard distribution files into memory.

    Files are looked for in ``data_dir``, ``data_dir/<name>`` (and common alternative folder
    names) and in the folder the unpacked distribution creates (e.g. ``cifar-10-batches-bin``);
    ``docs/modelzoo.md`` lists them. ``digits`` needs no files.

    Args:
        name: one of :data:`DATASETS` (case, ``-`` and ``_`` ignored: ``"CIFAR-10"`` works).
        data_dir: directory holding the files; default :func:`default_data_dir`.
        resize: side to resize the images to (bilinear, ``align_corners=False``, antialiased
            when shrinking), e.g. 14 for the trajectory zoos' 14x14 MNIST. ``None`` keeps the
            native size (``digits``: 28).
        grayscale: convert RGB images to one channel (BT.601 luma); no-op for 1-channel data.

    Returns:
        The train and test images as float32 in ``[0, 1]`` (not normalised) and int64 labels.

    Raises:
        ValueError: unknown ``name``, bad ``resize``, or a malformed file (named in the
            message).
        DataFilesMissingError: files are missing; the message lists each one by full path, the
            directories searched and where to get the files.
        ImportError: an optional decoder (scipy for SVHN, Pillow for Tiny ImageNet) is missing.
    """
    canonical = _canonical(name)
    if resize is not None and (not isinstance(resize, int) or resize < 1):
        raise ValueError(f"resize must be a positive int or None, got {resize!r}")
    if canonical == "digits":
        parts = _load_digits()
    else:
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        parts = _READERS[canonical](canonical, root)
    (trx, try_), (tex, tey) = parts[0], parts[1]
    size = resize or _NATIVE_SIZE.get(canonical, trx.shape[-1])
    train_x = _convert(trx, size=size, grayscale=grayscale)
    test_x = _convert(tex, size=size, grayscale=grayscale)
    num_classes = _NUM_CLASSES.get(canonical, 10)
    return ImageData(
        name=canonical,
        train_x=train_x,
        train_y=torch.from_numpy(np.ascontiguousarray(try_, dtype=np.int64)),
        test_x=test_x,
        test_y=torch.from_numpy(np.ascontiguousarray(tey, dtype=np.int64)),
        num_classes=num_classes,
        channels=train_x.shape[1],
        size=size,
        classes=parts[2] if len(parts) > 2 else tuple(str(i) for i in range(num_classes)),
    )


def split_validation(
    data: ImageData | int, fraction: float = 0.15, seed: int = 42
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic train/validation split of a training set, as sorted index tensors.

    The permutation is ``numpy.random.default_rng(seed).permutation(n)``; its first
    ``round(fraction * n)`` entries are the validation indices (seed 42 as the Model Zoos'
    ``dataset_seed``). The result depends only on ``n``, ``fraction`` and ``seed``.

    Args:
        data: the :class:`ImageData` (its training set is split) or the number of samples.
        fraction: share of the training set held out for validation, in ``[0, 1)``.
        seed: seed of the permutation.

    Returns:
        ``(train_idx, val_idx)``: disjoint, sorted int64 tensors covering ``range(n)``. Use
        ``data.train_x[train_idx]`` or ``torch.utils.data.Subset``.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n = data if isinstance(data, int) else len(data.train_y)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(fraction * n)
    val = np.sort(perm[:n_val])
    train = np.sort(perm[n_val:])
    return torch.from_numpy(train.astype(np.int64)), torch.from_numpy(val.astype(np.int64))
