"""The papers' analyses of zoos, and the report that runs those a zoo supports.

One module per paper: :mod:`~weightzoo.analysis.mlds` (MLDS Tables 1-2),
:mod:`~weightzoo.analysis.probes` (Model Zoos Table 3), :mod:`~weightzoo.analysis.trajectories`
(training-trajectory Tables 2-3), :mod:`~weightzoo.analysis.property_inference`
(property-inference meta-classifiers, the "0.5 vs X" table), plus
:mod:`~weightzoo.analysis.quality` (training quality of any zoo) and
:mod:`~weightzoo.analysis.report`. scikit-learn is imported here only, so
``import weightzoo`` stays cheap::

    from weightzoo.analysis import report

    result = report("zoos/mlds-ds1", "zoos/mlds-ds2")
    print(result.to_text())
"""

from __future__ import annotations

from weightzoo.analysis.report import TABLE_IDS, Report, report
from weightzoo.analysis.tables import Row, Skipped, Table, UnsupportedTableError

__all__ = ["TABLE_IDS", "Report", "Row", "Skipped", "Table", "UnsupportedTableError", "report"]
