"""The on-disk format: layout, manifest, shard writer and reader (numpy + h5py, never torch)."""

from weightzoo.storage.layout import Layout, TensorSpec
from weightzoo.storage.manifest import FORMAT_VERSION, Manifest, ShardEntry
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.writer import ShardWriter, write_shard

__all__ = [
    "FORMAT_VERSION",
    "Layout",
    "Manifest",
    "ShardEntry",
    "ShardWriter",
    "TensorSpec",
    "ZooReader",
    "write_shard",
]
