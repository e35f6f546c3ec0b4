"""The 1-D convection problem of PINNs, now in :mod:`weightzoo.families.pinn.data`."""

from weightzoo.families.pinn.data import *  # noqa: F403
from weightzoo.families.pinn.data import __all__  # noqa: F401
