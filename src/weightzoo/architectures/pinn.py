"""The PINN of the convection zoos, now in :mod:`weightzoo.families.pinn.model`."""

from weightzoo.families.pinn.model import *  # noqa: F403
from weightzoo.families.pinn.model import __all__  # noqa: F401
