"""Phase-transition zoos on image grids: width (load) x batch size (temperature) x seeds.

Modules: :mod:`.spec` (torch-free: the specs, the named grids, their catalog listings and
sizes), :mod:`.model` (the networks of every width), :mod:`.train` (population-vectorised
training, one population per batch size, on the image toolkit of
:mod:`weightzoo.families.modelzoo.train`), :mod:`.landscape` (the ``landscape`` side file
and phase labels of a finished zoo) and :mod:`.family` (the family object the registry hands
out). The image splits are those of :mod:`weightzoo.families.modelzoo.data`. Imports point one
way: ``spec`` imports no other module of the package, ``model`` only ``spec``, and nothing
imports ``family``.
"""
