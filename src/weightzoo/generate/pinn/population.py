"""PINN population training, now in :mod:`weightzoo.families.pinn.train`."""

from weightzoo.families.pinn.train import *  # noqa: F403
from weightzoo.families.pinn.train import __all__  # noqa: F401
