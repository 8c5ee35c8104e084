"""atomnas_mm: AtomNAS for the OpenMMLab 2.x stack."""
from .version import __version__

__all__ = ['__version__']
