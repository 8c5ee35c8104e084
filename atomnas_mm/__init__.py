"""atomnas_mm: AtomNAS (ICLR 2020) for the OpenMMLab 2.x stack.

Importing the package registers its models, hooks and optimizer wrappers in
the ``atomnas_mm`` scope, lets mmengine checkpoints load under torch's
weights-only unpickler (through one loader with one-line errors) and makes
``_base_ = 'atomnas_mm::...'`` resolve. The framework internals this touches
are all in :mod:`atomnas_mm.utils.seams`.
"""
import warnings

# mmengine 0.10.7 imports pkg_resources (we pin setuptools<81 for it); its
# deprecation warning says nothing a user can act on.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated',
                        category=UserWarning)
# With mmcv-lite (the light set-up) mmcv.cnn warns, on import, that its
# deformable attention needs the compiled mmcv. AtomNAS never uses it, and
# what needs the compiled ops (mmdet) says so in one line (utils/stack.py).
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeform',
                        category=UserWarning)

from .utils import (allow_mmengine_checkpoints,  # noqa: E402
                    register_checkpoint_loader, register_config_package)
from .version import __version__  # noqa: E402

allow_mmengine_checkpoints()
register_checkpoint_loader()
register_config_package()

from . import engine, models  # noqa: E402,F401  (register components)

__all__ = ['__version__']
