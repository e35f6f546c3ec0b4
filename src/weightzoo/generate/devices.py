"""Checking a torch device string before any work starts."""

from __future__ import annotations

import torch

from weightzoo.errors import DeviceError

# Device types a zoo can be trained on, with how to ask torch whether one is usable here.
_ACCELERATORS = {
    "cuda": lambda: torch.cuda.is_available(),
    "mps": lambda: torch.backends.mps.is_available(),
    "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
}


def _count(kind: str) -> int:
    module = getattr(torch, kind, None)
    count = getattr(module, "device_count", None)
    return int(count()) if callable(count) else 1


def usable_devices() -> list[str]:
    """The device types usable with the installed torch on this machine (``cpu`` first)."""
    return ["cpu"] + [kind for kind, available in _ACCELERATORS.items() if available()]


def check_device(device: str) -> str:
    """Check that ``device`` names a torch device that can train here.

    Args:
        device: a torch device string such as ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.

    Returns:
        ``device`` unchanged.

    Raises:
        DeviceError: for a string torch does not parse, a device type that is not a training
            device, an accelerator the installed torch or machine lacks, or an index past the
            number of devices; the message names the devices that can be used.
    """
    usable = usable_devices()
    choices = f"choose one of: {', '.join(usable)}"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"--device {device!r} is not a torch device; {choices}") from None
    if parsed.type == "cpu":
        return device
    if parsed.type not in _ACCELERATORS:
        raise DeviceError(f"--device {device!r} cannot train models; {choices}")
    if parsed.type not in usable:
        build = f"torch {torch.__version__}"
        if parsed.type == "cuda" and torch.version.cuda is None:
            build += ", a build without CUDA"
        raise DeviceError(
            f"--device {device!r} is not available here ({build}); {choices}, or install a "
            f"torch build for {parsed.type} on a machine that has one"
        )
    if parsed.index is not None and parsed.index >= _count(parsed.type):
        raise DeviceError(
            f"--device {device!r}: this machine has {_count(parsed.type)} {parsed.type} "
            f"device(s), numbered from 0"
        )
    return device
