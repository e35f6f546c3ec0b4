"""Loss-landscape metrics of whole populations: Hessian spectrum, CKA, mode connectivity.

The metrics that "Taxonomizing local versus global structure in neural network loss
landscapes" (Yang, Hodgkinson, Theisen, Zou, Gonzalez, Ramchandran, Mahoney;
arXiv:2107.11228) uses to place a model in a phase diagram, and that "A Model Zoo on Phase
Transitions in Neural Networks" (Schürholt, Meynent, Zhou, Lu, Yang, Borth; arXiv:2504.18072)
records for every model:

* :func:`hessian_top_eigenvalue`: power iteration on Hessian-vector products of the training
  loss (local sharpness);
* :func:`hessian_trace`: Hutchinson's estimator with Rademacher probes;
* :func:`cka` / :func:`cka_between`: linear centred kernel alignment (Kornblith, Norouzi, Lee,
  Hinton; arXiv:1905.00414) between activations, and :func:`layer_activations` to get them;
* :func:`mode_connectivity`: loss and error along the linear path and along a trained quadratic
  Bézier curve (Garipov, Izmailov, Podoprikhin, Vetrov, Wilson; arXiv:1802.10026), with the
  barrier height and the signed ``mc`` of the phase diagrams.

Every function takes one module (the architecture; its own weights are never used) and the
weights of ``M`` models, either as rows ``[M, P]`` in the module's layout (as a zoo stores
them; pass ``layout=zoo.layout``) or as a dict of stacked tensors ``{name: [M, ...]}``. All
``M`` models are computed at once with :func:`torch.func.vmap` over
:func:`torch.func.functional_call`. Modules that ``vmap`` cannot batch (``nn.GRU`` /
``nn.LSTM``) run one model at a time through the same code (``vectorize=False``, chosen
automatically). The module is called in eval mode (dropout off, BatchNorm on its running
statistics; along mode-connectivity paths those are recomputed for each point, see
:mod:`weightzoo.landscape.batchnorm`); the caller's training flags are restored afterwards.
Random numbers (start vectors, probes, curve times) come from a generator seeded with
``seed`` and are shared by all models, so a model's result does not depend on which other
models are in the batch.

:func:`training_batches` returns the batches ``weightzoo landscape`` measures a zoo's models
on (the first batches of the zoo's training split); it loads when first used, so importing
this package imports no data set or generator code.

The definitions are written up in ``docs/landscape.md``.
"""

from weightzoo._lazy import lazy_getattr
from weightzoo.landscape._per_model import RowWidthError, stack_rows
from weightzoo.landscape.cka import UnknownLayerError, cka, cka_between, layer_activations
from weightzoo.landscape.connectivity import (
    ConnectivityResult,
    barrier,
    mode_connectivity,
    signed_mc,
)
from weightzoo.landscape.hessian import (
    TopEigenvalues,
    hessian_top_eigenvalue,
    hessian_top_eigenvalue_details,
    hessian_trace,
)
from weightzoo.landscape.metrics import METRICS, UnknownMetricError, landscape_metrics
from weightzoo.landscape.options import LandscapeOptions

__all__ = [
    "METRICS",
    "ConnectivityResult",
    "LandscapeOptions",
    "RowWidthError",
    "TopEigenvalues",
    "UnknownLayerError",
    "UnknownMetricError",
    "barrier",
    "cka",
    "cka_between",
    "hessian_top_eigenvalue",
    "hessian_top_eigenvalue_details",
    "hessian_trace",
    "landscape_metrics",
    "layer_activations",
    "mode_connectivity",
    "signed_mc",
    "stack_rows",
    "training_batches",
]

# the zoo-level driver imports the data sets and generator code: loaded on first use
__getattr__ = lazy_getattr(__name__, {"training_batches": "weightzoo.landscape.zoo_metrics"})
