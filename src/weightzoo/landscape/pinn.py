"""Landscape metrics of PINN zoos, now in :mod:`weightzoo.families.pinn.landscape`."""

from weightzoo.families.pinn.landscape import *  # noqa: F403
from weightzoo.families.pinn.landscape import __all__  # noqa: F401
