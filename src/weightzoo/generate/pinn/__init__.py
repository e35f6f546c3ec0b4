"""PINN convection zoos live in :mod:`weightzoo.families.pinn`; ``population`` stays as a path."""
