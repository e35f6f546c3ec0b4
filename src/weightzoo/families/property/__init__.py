"""Property-inference zoos: MLPs trained on subsets whose share of a data property varies.

Modules: :mod:`.spec` (torch-free: the spec, the named specs, their catalog listings),
:mod:`.data` (the pools, the shared test set and each model's subset; numpy only),
:mod:`.model` (the MLP and its population forward), :mod:`.train` (population-vectorised
training, every model on its own subset), :mod:`.evaluate` (the evaluation task of
:func:`weightzoo.functional.evaluate`) and :mod:`.family` (the family object the registry hands
out). Imports point one way: ``data`` and ``model`` import no other module of the package,
``spec`` only ``data``, and nothing imports ``family``.
"""
