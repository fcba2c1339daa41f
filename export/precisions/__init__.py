"""Export behaviour of each precision: one module per precision, named by its row in the precision table.

A new precision is one module here (a :class:`~kdtool.export.precisions.base.PrecisionExport` subclass)
plus one row in :data:`kdtool.bundle.precision.PRECISIONS` whose ``exporter`` names the class.
"""

from __future__ import annotations

import importlib

from kdtool.bundle.precision import Precision
from kdtool.export.precisions.base import PrecisionExport


def precision_export(row: Precision) -> PrecisionExport:
    """The export behaviour of ``row``: the class its ``exporter`` ("module:Class") names, bound to the row."""
    module, cls = row.exporter.split(":")
    return getattr(importlib.import_module(module), cls)(row)


__all__ = ["PrecisionExport", "precision_export"]
