"""Modules shared by the tests: the toy family, loopback servers, builders, the contracts.

pytest puts ``tests/`` on ``sys.path`` (the folder of ``tests/conftest.py``, which has no
``__init__.py``), so a test in any folder imports these as ``from helpers import toy_family`` or
``from helpers.hub_server import LoopbackHub``.
"""
