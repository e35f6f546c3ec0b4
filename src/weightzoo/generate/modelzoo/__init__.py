"""Model Zoos (CNN-s, CNN-m, ResNet-18 on image datasets) and training-trajectory zoos.

Submodules: :mod:`.architectures` (networks and inits), :mod:`.population` (population-
vectorised training), :mod:`.family` (the named specs and the runner's family object).
"""
