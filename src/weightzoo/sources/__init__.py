"""Fetching the field's published zoos from their original releases.

One module, one job:

* :mod:`weightzoo.sources.http`: the one download path for plain HTTP(S) (resumable,
  verified, bounded) and the endpoint settings (``WEIGHTZOO_ZENODO_ENDPOINT``,
  ``WEIGHTZOO_HTTP_MIRROR``);
* :mod:`weightzoo.sources.zenodo`: Zenodo's records API (a record's files, sizes, checksums);
* :mod:`weightzoo.sources.archive`: confined extraction of archives from outside (zip, tar);
* :mod:`weightzoo.sources.remotezip`: reading chosen members of a remote zip through range
  requests;
* :mod:`weightzoo.sources.fetch`: ``weightzoo fetch zenodo:RECORD[/FILE]``, which lists a
  record or turns a Model Zoos zip into a zoo.

Nothing here imports torch when imported, and ``import weightzoo`` does not import this package.
"""
