"""Property-inference zoos: MLPs trained on subsets whose share of a data property varies.

Submodules: :mod:`.family` (the spec, the named specs and the runner's family object) and
:mod:`.population` (population-vectorised training on each model's own subset).
"""
