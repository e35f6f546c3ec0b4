"""MLDS: recurrent networks mimicking simple machines, with a backdoor, and random automata.

DS1 (machines), DS2 (the machines with a backdoor trigger) and DS3 (random automata); see
``docs/mlds.md`` for every rule and reading. Modules: :mod:`.spec` (torch- and numpy-free: the
specs, the named zoos, their catalog listings, the network shapes and their sizes, the machine
names), :mod:`.machines` and :mod:`.automata` (the DS1/DS2 machines and the DS3 automata),
:mod:`.data` (each class's data sets), :mod:`.model` (the network, the stacked forward of ``M``
networks and its loss, on :mod:`.wavefront` and :mod:`.gru_bptt`), :mod:`.train` (population
training and the attempt rounds), :mod:`.evaluate` (the evaluation task), :mod:`.landscape`
(what the landscape driver measures with), :mod:`.importer` (MLC@Home network files) and
:mod:`.family` (the family object the registry hands out). Imports point one way: ``spec``
imports no other module of the package, ``data`` only ``spec`` and the machines, ``model`` only
``spec`` and its kernels, and nothing imports ``family``.
"""
