"""PINN convection zoos: physics-informed MLPs on a grid of convection coefficient x learning rate.

Modules: :mod:`.spec` (torch-free: the spec, the named specs, their catalog listings),
:mod:`.model` (the network), :mod:`.data` (the convection problem and its loss), :mod:`.train`
(population-vectorised training with per-model input derivatives), :mod:`.landscape` (the
landscape side file on the PINN loss) and :mod:`.family` (the family object the registry hands
out). Imports point one way: ``spec``, ``model`` and ``data`` import no other module of the
package, and nothing imports ``family``.
"""
