"""The tiny-LM family: what the runner and the engines ask of tiny language-model zoos.

Planning is torch-free (:mod:`.spec`, and :mod:`.data` to check the corpus); the module
(:mod:`.model`) builds rows. Training code (:mod:`.train`) and the landscape measurement
(:mod:`.landscape`) load when a hook that needs them runs, so that building or evaluating a row
never imports the training toolkit. No module of the package imports this one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from weightzoo.families.tinylm import model
from weightzoo.families.tinylm.data import check_corpus, load_openwebtext
from weightzoo.families.tinylm.spec import FAMILY_NAME, METRICS, TinyLMSpec
from weightzoo.features import layout_of
from weightzoo.generate.base import Family, ModelPlan
from weightzoo.storage.layout import Layout

if TYPE_CHECKING:
    from torch import nn

    from weightzoo.storage.sidecar import SidecarRecord
    from weightzoo.zoo import Zoo

__all__ = ["FAMILY", "TinyLMFamily"]


class TinyLMFamily(Family[TinyLMSpec]):
    """The :class:`~weightzoo.generate.base.Family` of tiny-LM specs (one model dimension each).

    A grid (:class:`~weightzoo.families.tinylm.spec.TinyLMGridSpec`) is generated group by
    group, each group a :class:`~weightzoo.families.tinylm.spec.TinyLMSpec`.
    """

    name = FAMILY_NAME
    spec_class = TinyLMSpec
    progress_unit = "model-epoch"
    metrics = METRICS
    trainer = "weightzoo.families.tinylm.train:train_population"  # a population per batch size

    def layout(self, spec: TinyLMSpec) -> Layout:
        """Layout of one row (built on the meta device: nothing is allocated or drawn)."""
        return layout_of(model.from_spec(spec.to_dict(), device="meta"))

    def plan(self, spec: TinyLMSpec) -> list[ModelPlan]:
        """One plan per model, replicate-major; stratum = batch size.

        Raises:
            CorpusMismatchError: if the spec pins another corpus than this Python's.
            OpenWebTextMissingError: for the GPT-2 specs without the data on disk.
        """
        _check_data(spec)
        plans = []
        for model_id in range(spec.grid_models()):
            replicate, cell = divmod(model_id, len(spec.batch_sizes))
            batch = int(spec.batch_sizes[cell])
            columns = {
                "model_dim": spec.model_dim,
                "batch_size": batch,
                "load": float(spec.model_dim),
                "temperature": float(batch),
                "replicate": replicate,
            }
            plans.append(ModelPlan(model_id, spec.seed_start + replicate, f"b{batch}", columns))
        return spec.sampled(plans, ["batch_size"])

    def progress_total(self, spec: TinyLMSpec, plans: Sequence[ModelPlan]) -> int:
        """Model-epochs: every model trains every epoch."""
        return len(plans) * spec.epochs

    def finalize(self, spec: TinyLMSpec, root: Path, device: str = "cpu") -> None:
        """Landscape metrics of every stored checkpoint, then the phase labels.

        Idempotent: a ``landscape`` side file that already holds every metric of every
        model and checkpoint is kept.
        """
        from weightzoo.families.tinylm.landscape import (  # the landscape engine: here only
            DEFAULT_METRICS,
            compute_lm_landscape,
        )
        from weightzoo.landscape.driver import landscape_is_complete
        from weightzoo.landscape.taxonomy import LANDSCAPE_SIDECAR, write_phases
        from weightzoo.storage.sidecar import sidecar_records

        if not landscape_is_complete(root, DEFAULT_METRICS, LANDSCAPE_SIDECAR):
            compute_lm_landscape(root, epochs="all", device=device, progress=False)
        elif "phase" in sidecar_records(root)[LANDSCAPE_SIDECAR].arrays:
            return  # a finished run: nothing to redo
        write_phases(root)

    def build_model(self, spec: Mapping[str, Any], columns: Mapping[str, Any]) -> nn.Module | None:
        """The decoder of the spec's sizes; ``None`` for a spec without ``model_dim``."""
        return model.from_spec(spec) if "model_dim" in spec else None

    def landscape_plan(self, zoo: Zoo) -> Callable[..., SidecarRecord]:
        """:func:`~weightzoo.families.tinylm.landscape.compute_lm_landscape`: on its own text."""
        from weightzoo.families.tinylm.landscape import compute_lm_landscape  # the engine

        return compute_lm_landscape


def _check_data(spec: TinyLMSpec) -> None:
    """Fail early (before anything is written) when the spec's corpus is not usable here."""
    if spec.corpus == "openwebtext":
        load_openwebtext(spec.data_dir, spec.name)
    else:
        check_corpus(spec.corpus_sha256, f"spec {spec.name!r}")


FAMILY = TinyLMFamily()
"""The family object the registry hands out."""
