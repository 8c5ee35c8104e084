"""Data sets of the ``atomnas_mm`` scope (``type='atomnas_mm.X'``)."""
from .testbed import TestbedDataset

__all__ = ['TestbedDataset']
