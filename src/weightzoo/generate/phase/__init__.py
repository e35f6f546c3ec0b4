"""Phase-transition zoos on image grids: width (load) x batch size (temperature) x seeds.

Submodules: :mod:`.family` (the spec, the named specs and the runner's family object, with
its ``finalize`` hook) and :mod:`.population` (population-vectorised training, one population
per batch size).
"""
