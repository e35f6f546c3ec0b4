"""The zoo generator: specs, architectures, machines, image data, population training, writing.

Importing :mod:`weightzoo` never imports this package (it pulls in training code); the CLI and
users who generate zoos import it explicitly.
"""
