"""Exceptions raised by weightzoo.

Every exception derives from :class:`WeightzooError` and also from the built-in that a caller
would naturally catch (``KeyError``, ``ValueError``, ``FileNotFoundError``), following the
convention of huggingface_hub. Messages say what was expected, what was found and what to do.
"""

from __future__ import annotations


class WeightzooError(Exception):
    """Base class of every error weightzoo raises on purpose."""

    def __str__(self) -> str:
        # KeyError quotes its message; every weightzoo error prints it plainly.
        return str(self.args[0]) if self.args else ""


class ZooNotFoundError(WeightzooError, FileNotFoundError):
    """A zoo directory or its manifest does not exist."""


class ShardMissingError(WeightzooError, FileNotFoundError):
    """A shard that the manifest lists is not on disk."""


class ShardCorruptError(WeightzooError, ValueError):
    """A shard is truncated, unreadable, or its sha256 differs from the manifest."""


class UnsafeShardError(ShardCorruptError):
    """A shard holds HDF5 objects its writer never makes, so it could read outside its file.

    Links to other files or within the file, virtual datasets, external raw storage, filters,
    unexpected dtypes, shapes or names, or declared sizes its file cannot hold.
    """


class StorageWriteError(WeightzooError, OSError):
    """Writing a zoo file failed (disk full, I/O error); the message names the file."""


class ManifestError(WeightzooError, ValueError):
    """A manifest is malformed, names a path outside the zoo, or contradicts its shards."""


class FormatVersionError(ManifestError):
    """A manifest was written by a newer format version than this weightzoo reads."""


class SpecMismatchError(WeightzooError, ValueError):
    """A zoo directory already holds a zoo generated from a different spec."""


class UnknownSplitError(WeightzooError, ValueError):
    """A split name that the zoo does not have."""


class UnknownColumnError(WeightzooError, KeyError):
    """A metric, metadata column or feature name that the zoo does not have."""


class EpochError(WeightzooError, ValueError):
    """A requested epoch that the zoo has no checkpoint for."""


class UnknownZooError(WeightzooError, KeyError):
    """A zoo name that the catalog does not know."""


class LayoutError(WeightzooError, ValueError):
    """A state_dict or vector does not match a layer layout."""


class DataFilesMissingError(WeightzooError, FileNotFoundError):
    """Raw dataset files (e.g. MNIST IDX files) needed to generate a zoo are missing."""


class HubError(WeightzooError, OSError):
    """A download from or upload to the Hugging Face Hub failed."""


class UnsafeFileError(WeightzooError, ValueError):
    """A file would need unpickling of arbitrary objects to be read, which weightzoo refuses."""


class UnsafePathError(UnsafeFileError, ManifestError):
    """A manifest (from disk or a hub) names a path outside the zoo directory.

    It is both an :class:`UnsafeFileError` (the file must not be used) and a
    :class:`ManifestError` (the contract of ``docs/format.md``).
    """


class ShardChangedError(ShardCorruptError):
    """A shard file was replaced after a reader validated it (another inode, size or mtime)."""


class ZooLockedError(WeightzooError, RuntimeError):
    """Another process holds the writer lock of a zoo directory."""


class InvalidOptionError(WeightzooError, ValueError):
    """A user option has the wrong type or an unsupported value."""


class EmptySelectionError(InvalidOptionError):
    """A selection (split, ``where=``, ``filter_viable``) that keeps no model.

    The message names the condition that emptied it and the values the zoo holds there;
    ``allow_empty=True`` asks for an empty Dataset instead.
    """


class UnreadableFileError(WeightzooError, ValueError):
    """An input file is empty, truncated, or not in the format its name promises."""


class SourcePathError(UnsafeFileError):
    """An import would leave its source directory, or write into it.

    Raised for a file that links out of SRC, and for a DEST inside SRC (a second run would read
    the first run's output back as source files).
    """


class DeviceError(InvalidOptionError):
    """A torch device that is unknown, or not usable with the installed torch and hardware."""


class MissingExtraError(WeightzooError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, purpose: str) -> object:
    """Import an optional dependency, or raise :class:`MissingExtraError` naming its extra.

    Args:
        module: the module to import (``"pandas"``).
        extra: the weightzoo extra that installs it (``"analysis"``).
        purpose: what needs it, for the message (``"Zoo.to_pandas()"``).

    Returns:
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed; install it with "
            f"`pip install 'weightzoo[{extra}]'`"
        ) from exc


class InputShapeError(WeightzooError, ValueError):
    """Inputs (a query set, an evaluation batch) that do not have the zoo's input shape."""


class SidecarNotFoundError(WeightzooError, FileNotFoundError):
    """A named side file of a zoo (``<zoo>/sidecars/<name>.h5``) does not exist."""


class SidecarCorruptError(WeightzooError, ValueError):
    """A side file that differs from its record (sha256, size, contents) or is another zoo's."""


class SliceMissingError(WeightzooError, FileNotFoundError):
    """A slice of a zoo generated in slices (``--slice i/n``) is missing or unfinished."""


class GroupedZooError(FormatVersionError):
    """A grouped zoo (format version 2) met code that reads one version-1 zoo only.

    It is a :class:`FormatVersionError`, as a reader that knows version 1 only raises; the
    message names the groups and says how to open one (``Zoo(path).group(NAME)``, ``group=``).
    """


class GroupRequiredError(WeightzooError, ValueError):
    """A grouped zoo with several groups was opened without saying which (``group=``)."""


class UnknownGroupError(WeightzooError, KeyError):
    """A group name that the grouped zoo does not have (or a ``group=`` for a version-1 zoo)."""


class GroupManifestError(ManifestError):
    """A group's ``zoo.json`` differs from the sha256 the top manifest records for it."""


class SourceError(WeightzooError, OSError):
    """A download from a published source (a Zenodo record, a bucket, a plain URL) failed."""


class SourceNotFoundError(SourceError, FileNotFoundError):
    """A record or file that its source does not have (404), has withdrawn (410) or not listed."""


class SourceContentError(SourceError, ValueError):
    """A source served something other than the file: an HTML page, an error JSON, a wrong size."""


class SourceChecksumError(SourceError, ValueError):
    """A downloaded file whose checksum differs from the one its source publishes."""


class SourceConnectionError(SourceError, ConnectionError):
    """The connection to a source failed or was cut; the bytes already received are kept."""


class UnsafeArchiveError(UnsafeFileError):
    """An archive member that could write outside its folder or exhaust the disk.

    Raised for a member named with ``..``, an absolute path, a drive letter or a backslash; a
    link, device or FIFO; a name that appears twice; and a member (or archive) that expands
    beyond its bound (a zip bomb). Nothing of the archive is kept.
    """
