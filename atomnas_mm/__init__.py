"""atomnas_mm: AtomNAS (ICLR 2020) for the OpenMMLab 2.x stack.

Importing the package registers its models, hooks and optimizer wrappers in
the ``atomnas_mm`` scope, lets mmengine checkpoints load under torch's
weights-only unpickler and makes ``_base_ = 'atomnas_mm::...'`` resolve.
"""
from .utils import allow_mmengine_checkpoints, register_config_package
from .version import __version__

allow_mmengine_checkpoints()
register_config_package()

from . import engine, models  # noqa: E402,F401  (register components)

__all__ = ['__version__']
