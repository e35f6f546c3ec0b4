"""Full float32 on CUDA: TF32 off and deterministic cuDNN for the duration of a computation.

PyTorch lets cuDNN run float32 convolutions in TF32 by default on Ampere and later GPUs
(``torch.backends.cudnn.allow_tf32``), which rounds their inputs to 10 mantissa bits. A
population trained, evaluated or differentiated that way on CUDA would drift from the same
computation on the CPU far beyond float32 rounding: evaluated accuracies flip on near ties and
Hessian-vector products of a CNN lose about three significant digits. Every CUDA computation
whose numbers weightzoo stores or returns therefore runs inside :func:`exact_cuda`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def exact_cuda(device: str | torch.device) -> Iterator[None]:
    """On a CUDA device: full float32 (no TF32) and deterministic cuDNN, restored after.

    cuDNN's autotuner and non-deterministic algorithms are switched off too, so that two CUDA
    runs of one computation give the same bytes. On any other device this does nothing.

    Args:
        device: the device the computation runs on (``"cuda"``, ``"cuda:1"``, ``"cpu"``...).
    """
    if torch.device(device).type != "cuda":
        yield
        return
    backends = torch.backends
    saved = (
        backends.cuda.matmul.allow_tf32,
        backends.cudnn.allow_tf32,
        backends.cudnn.deterministic,
        backends.cudnn.benchmark,
    )
    backends.cuda.matmul.allow_tf32 = False
    backends.cudnn.allow_tf32 = False
    backends.cudnn.deterministic = True
    backends.cudnn.benchmark = False
    try:
        yield
    finally:
        (
            backends.cuda.matmul.allow_tf32,
            backends.cudnn.allow_tf32,
            backends.cudnn.deterministic,
            backends.cudnn.benchmark,
        ) = saved
