"""The zoos' tasks as data: image datasets and their splits, shared by several families.

Pure data (numpy, and torch for image conversion): no training, no modules. The generator
trains on these data sets, and :mod:`weightzoo.functional` rebuilds a zoo's evaluation data
from its manifest with the same code, so evaluating a stored row reproduces its stored metrics
without importing the generator. Imports only :mod:`weightzoo.errors`.
"""
