"""Tiny-LM zoos: GPT-style decoders on a grid of model dimension x batch size.

Modules: :mod:`.spec` (torch-free: the specs, the named grids, their catalog listings),
:mod:`.model` (the decoder), :mod:`.data` (the corpora, their split and windows), :mod:`.train`
(population-vectorised training with ``vmap`` over stacked parameters), :mod:`.landscape` (the
landscape side file on the next-token loss) and :mod:`.family` (the family object the registry
hands out). Imports point one way: ``model`` and ``data`` import no other module of the package,
``spec`` only ``data``, and nothing imports ``family``.
"""
