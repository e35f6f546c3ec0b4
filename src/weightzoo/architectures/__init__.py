"""The shared image networks (:mod:`.image`), and :func:`build_model`: a zoo's module.

A manifest stores the full spec that generated a zoo (``zoo.json``'s ``spec``);
``build_model(spec)`` builds the module whose :func:`weightzoo.features.layout_of` is the zoo's
layout, so that a row runs with ``features.load_vector(build_model(spec), row, layout)`` without
importing the generator. A family of :mod:`weightzoo.families` builds its own module
(:meth:`~weightzoo.generate.base.Family.build_model`); this package keeps the networks that
several families share, and imports only torch, :mod:`weightzoo.features`,
:mod:`weightzoo.storage` and the registry.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from weightzoo.architectures import image
from weightzoo.errors import LayoutError, WeightzooError
from weightzoo.escaping import exception_summary
from weightzoo.families import family_hooks
from weightzoo.features import layout_of
from weightzoo.storage.layout import Layout

__all__ = [
    "UnbuildableSpecError",
    "build_model",
    "check_layout",
    "image",
]


class UnbuildableSpecError(WeightzooError, ValueError):
    """The spec does not say which module its rows belong to."""


def build_model(
    spec: Mapping[str, Any],
    columns: Mapping[str, Any] | None = None,
    *,
    layout: Layout | None = None,
    source: str = "the zoo's manifest",
) -> nn.Module:
    """The (freshly initialised) module of a zoo's rows.

    A spec read from a manifest is outside data: pass the zoo's ``layout`` and the module is
    first built on the ``meta`` device and checked against it (:func:`check_layout`), so that
    a spec of absurd sizes is refused before any memory is allocated for it.

    Args:
        spec: a zoo spec as stored in a manifest (``Manifest.spec``, or ``ZooSpec.to_dict()``).
        columns: the model's own columns where they change the module: ``activation`` and
            ``dropout`` of a hyperparameter-grid zoo (with one activation in the spec it may be
            left out; dropout only matters in training mode).
        layout: the layout the module must have (the zoo's); ``None`` builds unchecked, for a
            spec the caller made itself.
        source: where spec and layout come from (the manifest's path), for messages.

    Returns:
        The module; load a row into it with :func:`weightzoo.features.load_vector`.

    Raises:
        UnbuildableSpecError: for an imported zoo (its spec names no weightzoo architecture),
            an unknown architecture, a grid zoo's row without its activation, or (with
            ``layout``) sizes no module can have.
        LayoutError: (with ``layout``) if the spec's module has other tensors than the layout.
    """
    if layout is not None:
        check_layout(spec, layout, columns, source=source)
    return _build(spec, dict(columns or {}))


def check_layout(
    spec: Mapping[str, Any],
    layout: Layout,
    columns: Mapping[str, Any] | None = None,
    *,
    source: str = "the zoo's manifest",
) -> None:
    """Check that ``spec`` builds a module of exactly ``layout``'s tensors, allocating nothing.

    The module is built on the ``meta`` device (shapes only, no storage, no initialisation),
    so a spec that asks for terabytes costs no more than a valid one.

    Args:
        spec: a zoo spec as stored in a manifest.
        layout: the layout its rows have.
        columns: as :func:`build_model`.
        source: where spec and layout come from, for messages.

    Raises:
        UnbuildableSpecError: as :func:`build_model`, and for sizes no module can have.
        LayoutError: for a tensor name or shape that differs from the layout.
    """
    limit = _MAX_REGISTRATIONS_PER_TENSOR * len(layout.tensors) + _MIN_REGISTRATIONS
    try:
        # shapes only: a zero-size tensor's "no-op initialisation" warning means nothing here
        with torch.device("meta"), warnings.catch_warnings(), _bounded(limit):
            warnings.simplefilter("ignore", UserWarning)
            built = layout_of(_build(spec, dict(columns or {})))
    except WeightzooError:
        raise
    except _TooManyParts:
        raise LayoutError(
            f"{source}: the spec builds a module of more than {limit} tensors and submodules "
            f"but the layout has {len(layout.tensors)} tensors; building stopped there. The "
            "manifest is damaged: fetch or generate the zoo again"
        ) from None
    except _BUILD_ERRORS as exc:
        raise UnbuildableSpecError(
            f"{source}: spec {_brief(spec.get('name'))} builds no module "
            f"({exception_summary(exc, 120)}); the manifest is damaged: fetch or generate the "
            "zoo again"
        ) from None
    _compare(built, layout, source)


# What a spec of wrong types or sizes makes a constructor raise (int("x"), a negative size,
# a shape whose size overflows, a missing key).
_BUILD_ERRORS = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    ArithmeticError,
    RuntimeError,
    MemoryError,
)
# A module registers a few parameters, buffers and submodules per tensor of its layout; a spec
# of 10**9 layers is stopped after this many, long before its Python objects fill the memory.
_MAX_REGISTRATIONS_PER_TENSOR = 8
_MIN_REGISTRATIONS = 1024


class _TooManyParts(Exception):
    """A module under construction registered more parts than its layout can explain."""


@contextlib.contextmanager
def _bounded(limit: int) -> Iterator[None]:
    """Stop this thread's module construction after ``limit`` registered parts.

    Counts every parameter, buffer and submodule registered (torch's global registration
    hooks), in the calling thread only, so that other threads building modules are untouched.
    """
    from torch.nn.modules import module as torch_module

    me, count = threading.get_ident(), [0]

    def hook(*_: Any) -> None:
        if threading.get_ident() == me:
            count[0] += 1
            if count[0] > limit:
                raise _TooManyParts(limit)

    handles = [
        torch_module.register_module_parameter_registration_hook(hook),
        torch_module.register_module_buffer_registration_hook(hook),
        torch_module.register_module_module_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _compare(built: Layout, layout: Layout, source: str) -> None:
    """Raise a one-line LayoutError naming the first tensor where ``built`` and ``layout`` part."""
    have = {t.name: t.shape for t in built}
    want = {t.name: t.shape for t in layout}
    if have == want:
        return
    name = next(n for n in [*want, *have] if have.get(n) != want.get(n))
    raise LayoutError(
        f"{source}: the spec builds a module of {built.num_params} parameters in "
        f"{len(have)} tensors but the layout has {layout.num_params} in {len(want)}; tensor "
        f"{_brief(name)} is {have.get(name, 'absent')} in the module and "
        f"{want.get(name, 'absent')} in the layout. The manifest is damaged: fetch or "
        "generate the zoo again"
    )


def _brief(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line messages about outside data."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _build(spec: Mapping[str, Any], columns: dict[str, Any]) -> nn.Module:
    if spec.get("spec_class") == "SparsifiedTwin" and isinstance(spec.get("source_spec"), Mapping):
        return _build(spec["source_spec"], columns)
    family = spec.get("family")
    hooks = family_hooks(family)
    built = None if hooks is None else hooks.build_model(spec, columns)
    if built is not None:
        return built
    raise UnbuildableSpecError(
        f"zoo spec {spec.get('name')!r} (family {family!r}) names no weightzoo architecture; "
        "imported zoos keep the source's own module: build it yourself and use "
        "weightzoo.features.load_vector(module, row, zoo.layout)"
    )
