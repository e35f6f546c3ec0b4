"""Model Zoos and trajectory zoos: populations of CNNs, ResNets and MLPs on image datasets.

Two registry names share this package: ``modelzoo`` (the zoos of Schürholt et al., *Model
Zoos: A Dataset of Diverse Populations of Neural Network Models*, arXiv:2209.14764) and
``trajectory`` (every epoch of 250 seeds of the trajectory paper's MLP and CNN). Modules:
:mod:`.spec` (torch-free: the specs, the named zoos, their catalog listings and sizes),
:mod:`.model` (a row's network, from the shared :mod:`weightzoo.architectures.image`),
:mod:`.data` (the image splits on the training device), :mod:`.train` (population-vectorised
training on image splits, which the phase zoos use too), :mod:`.sparsify` (the sparsified
twins of a trained zoo), :mod:`.importer` (the Model Zoos as published) and :mod:`.family`
(the family objects the registry hands out). Imports point one way: ``spec`` imports no other
module of the package, ``model`` none, ``data`` only ``spec``, and nothing imports ``family``.
"""
