"""The on-disk format: layout, manifest, shard writer and reader (numpy + h5py, never torch)."""

from weightzoo.storage.groups import GroupedManifest, GroupEntry, load_any, resolve_group
from weightzoo.storage.layout import Layout, TensorSpec
from weightzoo.storage.manifest import (
    FORMAT_VERSION,
    GROUPED_FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    shard_file_name,
)
from weightzoo.storage.reader import ZooReader
from weightzoo.storage.verify import verify_shard, verify_zoo
from weightzoo.storage.writer import ZooWriter

__all__ = [
    "FORMAT_VERSION",
    "GROUPED_FORMAT_VERSION",
    "MANIFEST_NAME",
    "GroupEntry",
    "GroupedManifest",
    "Layout",
    "Manifest",
    "ShardEntry",
    "TensorSpec",
    "ZooReader",
    "ZooWriter",
    "load_any",
    "resolve_group",
    "shard_file_name",
    "verify_shard",
    "verify_zoo",
]
