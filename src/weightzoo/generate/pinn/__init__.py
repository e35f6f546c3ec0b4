"""PINN convection zoos: physics-informed MLPs on a grid of convection coefficient x learning rate.

Submodules: :mod:`.family` (the spec, the named specs, the runner's family object and its
``finalize`` hook) and :mod:`.population` (population-vectorised training with per-model
input derivatives).
"""
