"""The sine family: small tanh MLPs fitting ``sin(x)``, on a grid of width x learning rate.

It is the worked example of ``docs/adding-a-family.md``: one folder and one registry line make
a family that ``weightzoo generate``, ``weightzoo list``, :class:`weightzoo.ZooDataset` and
:func:`weightzoo.architectures.build_model` know. Modules: :mod:`.spec` (torch-free: the spec,
the named specs, their catalog listings), :mod:`.model` (the network and its batched forward),
:mod:`.train` (the population's task and training) and :mod:`.family` (the family object).
Imports point one way: ``spec`` and ``model`` import no other module of the package, and
nothing imports ``family``.
"""
