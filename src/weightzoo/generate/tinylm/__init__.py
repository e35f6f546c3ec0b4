"""Tiny language-model phase-transition zoos: GPT-style decoders over model_dim x batch size.

Submodules: :mod:`.family` (the spec, the named specs and the runner's family object) and
:mod:`.population` (population-vectorised training with ``vmap`` over stacked parameters).
"""
