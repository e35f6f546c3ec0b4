"""Image-data readers on small files written here in each dataset's real distribution format.

Like torchvision's dataset tests, every test writes a few fake images in the exact on-disk
format (IDX with and without gzip, CIFAR binary records, STL-10 column-major planes, LIBSVM
USPS, MATLAB v5 SVHN, Tiny ImageNet folders) and checks what the reader returns.
"""

from __future__ import annotations

import bz2
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from weightzoo.errors import DataFilesMissingError
from weightzoo.imagesets.readers import (
    DATASETS,
    default_data_dir,
    load_image_data,
    split_validation,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------ writers
def write_idx(path: Path, array: np.ndarray, *, gz: bool) -> None:
    """An unsigned-byte IDX file: magic 0x0000 08 <ndim>, big-endian int32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def write_mnist(root: Path, *, gz: bool, train: int = 6, test: int = 4) -> dict:
    images = {
        "train": RNG.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "t10k": RNG.integers(0, 256, (test, 28, 28), dtype=np.uint8),
    }
    labels = {"train": np.arange(train) % 10, "t10k": (np.arange(test) + 3) % 10}
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte", images[prefix], gz=gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels[prefix].astype(np.uint8), gz=gz)
    return {"images": images, "labels": labels}


def cifar_records(count: int, label_bytes: list[np.ndarray]) -> tuple[bytes, np.ndarray]:
    """Records ``<label bytes><1024 R><1024 G><1024 B>`` and the images ``[N, 3, 32, 32]``."""
    images = RNG.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    labels = np.stack(label_bytes, axis=1).astype(np.uint8)
    records = np.concatenate([labels, images.reshape(count, -1)], axis=1)
    return records.tobytes(), images


# ------------------------------------------------------------------------------ MNIST-like
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize(("name", "folder"), [("mnist", "mnist/raw"), ("fashion-mnist", "")])
def test_idx_readers(tmp_path, gz, name, folder):
    truth = write_mnist(tmp_path / folder, gz=gz)
    data = load_image_data(name, tmp_path)
    assert data.name == name
    assert data.train_x.shape == (6, 1, 28, 28) and data.test_x.shape == (4, 1, 28, 28)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    expected = torch.from_numpy(truth["images"]["train"]).float()[:, None] / 255.0
    assert torch.allclose(data.train_x, expected)
    assert data.train_y.tolist() == truth["labels"]["train"].tolist()
    assert data.test_y.tolist() == truth["labels"]["t10k"].tolist()
    assert (data.num_classes, data.channels, data.size) == (10, 1, 28)


def test_idx_resize_to_14(tmp_path):
    write_mnist(tmp_path, gz=True)
    data = load_image_data("MNIST", tmp_path, resize=14)
    assert data.train_x.shape == (6, 1, 14, 14)
    assert 0.0 <= data.train_x.min() and data.train_x.max() <= 1.0


def test_idx_bad_magic_and_truncation_are_named(tmp_path):
    write_mnist(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    raw = bad.read_bytes()
    bad.write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        load_image_data("mnist", tmp_path)
    bad.write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        load_image_data("mnist", tmp_path)


def test_missing_files_error_names_files_and_source(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 28, 28)), gz=True)
    with pytest.raises(DataFilesMissingError) as info:
        load_image_data("mnist", tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "3 required file(s) missing" in message
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert str(tmp_path / f"{stem}.gz") in message
    assert "train-images-idx3-ubyte.gz" not in message.split("searched:")[0]
    assert "yann.lecun.com/exdb/mnist" in message
    assert "never downloads" in message


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("fashion-mnist", "zalandoresearch/fashion-mnist"),
        ("cifar10", "cifar-10-binary.tar.gz"),
        ("cifar100", "cifar-100-binary.tar.gz"),
        ("svhn", "train_32x32.mat"),
        ("usps", "usps.bz2"),
        ("stl10", "stl10_binary.tar.gz"),
        ("tiny-imagenet", "tiny-imagenet-200.zip"),
    ],
)
def test_every_reader_says_where_to_get_its_files(tmp_path, name, hint):
    with pytest.raises(DataFilesMissingError, match="missing") as info:
        load_image_data(name, tmp_path)
    assert hint in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_archive_found_but_not_extracted_is_pointed_out(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"not really")
    with pytest.raises(DataFilesMissingError, match="found the archive .*extract it"):
        load_image_data("cifar10", tmp_path)


# ------------------------------------------------------------------------------ CIFAR
def test_cifar10_binary(tmp_path):
    home = tmp_path / "cifar-10-batches-bin"
    home.mkdir()
    train_images = []
    for i in range(1, 6):
        raw, images = cifar_records(2, [np.array([i, 9 - i])])
        (home / f"data_batch_{i}.bin").write_bytes(raw)
        train_images.append(images)
    raw, _test_images = cifar_records(3, [np.array([0, 5, 7])])
    (home / "test_batch.bin").write_bytes(raw)
    data = load_image_data("cifar-10", tmp_path)
    assert data.train_x.shape == (10, 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    assert data.train_y.tolist() == [1, 8, 2, 7, 3, 6, 4, 5, 5, 4]
    assert data.test_y.tolist() == [0, 5, 7]
    # channel-planar records: R plane first, row-major inside a plane
    expected = torch.from_numpy(np.concatenate(train_images)).float() / 255.0
    assert torch.allclose(data.train_x, expected)
    grey = load_image_data("cifar10", tmp_path, grayscale=True, resize=28)
    assert grey.train_x.shape == (10, 1, 28, 28) and grey.channels == 1


def test_cifar100_uses_fine_labels(tmp_path):
    home = tmp_path / "cifar100" / "cifar-100-binary"
    home.mkdir(parents=True)
    raw, images = cifar_records(4, [np.array([0, 1, 2, 19]), np.array([99, 0, 42, 7])])
    (home / "train.bin").write_bytes(raw)
    raw, _ = cifar_records(1, [np.array([3]), np.array([55])])
    (home / "test.bin").write_bytes(raw)
    data = load_image_data("cifar100", tmp_path)
    assert data.num_classes == 100
    assert data.train_y.tolist() == [99, 0, 42, 7] and data.test_y.tolist() == [55]
    assert torch.allclose(data.train_x, torch.from_numpy(images).float() / 255.0)


def test_cifar_truncated_record_is_named(tmp_path):
    home = tmp_path / "cifar-100-binary"
    home.mkdir()
    raw, _ = cifar_records(2, [np.zeros(2), np.zeros(2)])
    (home / "train.bin").write_bytes(raw[:-1])
    (home / "test.bin").write_bytes(raw)
    with pytest.raises(ValueError, match=r"train\.bin.*3074-byte record"):
        load_image_data("cifar100", tmp_path)


# ------------------------------------------------------------------------------ STL-10
def test_stl10_column_major_planes_and_labels(tmp_path):
    home = tmp_path / "stl10_binary"
    home.mkdir()
    images = {
        k: RNG.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        for k, n in (("train", 3), ("test", 2))
    }
    labels = {"train": np.array([1, 10, 5]), "test": np.array([2, 3])}
    for split in ("train", "test"):
        # the files store each channel column-major: [N, C, W, H] in C order
        (home / f"{split}_X.bin").write_bytes(images[split].transpose(0, 1, 3, 2).tobytes())
        (home / f"{split}_y.bin").write_bytes(labels[split].astype(np.uint8).tobytes())
    data = load_image_data("stl10", tmp_path)
    assert data.train_x.shape == (3, 3, 96, 96)
    assert torch.allclose(data.train_x, torch.from_numpy(images["train"]).float() / 255.0)
    assert data.train_y.tolist() == [0, 9, 4] and data.test_y.tolist() == [1, 2]
    small = load_image_data("stl10", tmp_path, resize=32)
    assert small.train_x.shape == (3, 3, 32, 32)


def test_stl10_label_out_of_range_is_named(tmp_path):
    home = tmp_path / "stl10_binary"
    home.mkdir()
    for split in ("train", "test"):
        (home / f"{split}_X.bin").write_bytes(bytes(3 * 96 * 96))
        (home / f"{split}_y.bin").write_bytes(bytes([11]))
    with pytest.raises(ValueError, match=r"train_y\.bin: labels must decode to 0\.\.9"):
        load_image_data("stl10", tmp_path)


# ------------------------------------------------------------------------------ USPS
def _usps_text(pixels: np.ndarray, labels: np.ndarray) -> str:
    lines = []
    for row, label in zip(pixels, labels, strict=True):
        feats = " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(row) if v != 0.0)
        lines.append(f"{label} {feats}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("compressed", [True, False])
def test_usps_libsvm(tmp_path, compressed):
    pixels = RNG.uniform(-1, 1, (5, 256)).astype(np.float32)
    pixels[0, :10] = 0.0  # LIBSVM omits zero features: they must read back as 0 (-> 0.5)
    labels = np.array([1, 2, 10, 4, 5])
    for name, rows in (("usps", slice(0, 3)), ("usps.t", slice(3, 5))):
        text = _usps_text(pixels[rows], labels[rows]).encode()
        if compressed:
            (tmp_path / f"{name}.bz2").write_bytes(bz2.compress(text))
        else:
            (tmp_path / name).write_bytes(text)
    data = load_image_data("usps", tmp_path)
    assert data.train_x.shape == (3, 1, 16, 16) and data.test_x.shape == (2, 1, 16, 16)
    expected = (torch.from_numpy(pixels[:3]).view(3, 1, 16, 16) + 1) / 2
    assert torch.allclose(data.train_x, expected, atol=1e-6)
    assert data.train_y.tolist() == [0, 1, 9] and data.test_y.tolist() == [3, 4]
    assert load_image_data("usps", tmp_path, resize=28).train_x.shape == (3, 1, 28, 28)


def test_usps_bad_line_is_named(tmp_path):
    (tmp_path / "usps").write_text("1 1:0.5 2:0.1\n3 999:0.2\n")
    (tmp_path / "usps.t").write_text("1 1:0.5\n")
    with pytest.raises(ValueError, match="usps, line 2"):
        load_image_data("usps", tmp_path)


# ------------------------------------------------------------------------------ SVHN
def test_svhn_matlab_v5(tmp_path):
    sio = pytest.importorskip("scipy.io")
    truth = {}
    for split, n in (("train", 4), ("test", 2)):
        images = RNG.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = np.array([10, 1, 9, 10][:n]).reshape(-1, 1)  # 10 stands for digit 0
        # Format 2 stores X as [32, 32, 3, N] (height, width, channel, sample)
        sio.savemat(
            tmp_path / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": labels}
        )
        truth[split] = images
    data = load_image_data("svhn", tmp_path)
    assert data.train_x.shape == (4, 3, 32, 32)
    assert torch.allclose(data.train_x, torch.from_numpy(truth["train"]).float() / 255.0)
    assert data.train_y.tolist() == [0, 1, 9, 0] and data.test_y.tolist() == [0, 1]


def test_svhn_wrong_variables_are_named(tmp_path):
    sio = pytest.importorskip("scipy.io")
    for split in ("train", "test"):
        sio.savemat(tmp_path / f"{split}_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"train_32x32\.mat: expected variables 'X' and 'y'"):
        load_image_data("svhn", tmp_path)


# ------------------------------------------------------------------------------ Tiny ImageNet
def _tiny_tree(root: Path, wnids=("n01443537", "n01629819"), per_class=2) -> Path:
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    lines = []
    for k, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for j in range(per_class):
            (folder / f"{wnid}_{j}.JPEG").write_bytes(b"")
        lines.append(f"val_{k}.JPEG\t{wnid}\t0\t0\t63\t63")
        (base / "val" / "images" / f"val_{k}.JPEG").write_bytes(b"")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base


def test_tiny_imagenet_missing_images_are_listed(tmp_path):
    base = _tiny_tree(tmp_path)
    (base / "val" / "images" / "val_1.JPEG").unlink()
    for f in (base / "train" / "n01629819" / "images").iterdir():
        f.unlink()
    with pytest.raises(DataFilesMissingError) as info:
        load_image_data("tiny-imagenet", tmp_path)
    message = str(info.value)
    assert str(base / "val" / "images" / "val_1.JPEG") in message
    assert str(base / "train" / "n01629819" / "images" / "*.JPEG") in message
    assert "cs231n" in message


def test_tiny_imagenet_unknown_class_in_annotations(tmp_path):
    base = _tiny_tree(tmp_path)
    (base / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="n99999999"):
        load_image_data("tiny-imagenet", tmp_path)


def test_tiny_imagenet_jpeg_folders(tmp_path):
    image_module = pytest.importorskip("PIL.Image")  # Pillow decodes the JPEGs
    base = _tiny_tree(tmp_path)
    for path in base.rglob("*.JPEG"):
        colour = (200, 10, 10) if "n01443537" in path.name else (10, 10, 200)
        image_module.new("RGB", (64, 64), colour).save(path, format="JPEG", quality=95)
    data = load_image_data("tiny-imagenet", tmp_path, resize=32)
    assert data.train_x.shape == (4, 3, 32, 32) and data.num_classes == 200
    assert data.classes == ("n01443537", "n01629819")
    assert data.train_y.tolist() == [0, 0, 1, 1] and data.test_y.tolist() == [0, 1]
    assert data.train_x[0, 0].mean() > 0.7 and data.train_x[-1, 2].mean() > 0.7


# ------------------------------------------------------------------------------ digits & API
def test_digits_offline_default():
    data = load_image_data("digits")
    assert data.train_x.shape[1:] == (1, 28, 28)
    assert len(data.train_y) + len(data.test_y) == 1797
    assert abs(len(data.test_y) / 1797 - 0.2) < 0.01
    assert set(data.test_y.tolist()) == set(range(10))
    assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    again = load_image_data("digits", resize=14)
    assert again.train_x.shape[1:] == (1, 14, 14)
    assert torch.equal(again.train_y, data.train_y)


def test_unknown_name_and_bad_resize():
    with pytest.raises(ValueError, match="Did you mean 'mnist'"):
        load_image_data("minst")
    with pytest.raises(ValueError, match="resize must be a positive int"):
        load_image_data("digits", resize=0)
    assert "digits" in DATASETS


def test_default_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WEIGHTZOO_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    write_mnist(tmp_path, gz=True)
    assert load_image_data("mnist").train_x.shape[0] == 6


def test_split_validation_is_deterministic_and_disjoint():
    train, val = split_validation(100, 0.15, seed=42)
    again, val2 = split_validation(100, 0.15, seed=42)
    assert torch.equal(train, again) and torch.equal(val, val2)
    assert len(val) == 15 and len(train) == 85
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="fraction"):
        split_validation(10, 1.0)
