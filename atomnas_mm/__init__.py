"""atomnas_mm: AtomNAS (ICLR 2020) for the OpenMMLab 2.x stack.

Importing the package registers its models, hooks, optimizers and data
sets in the ``atomnas_mm`` scope and makes ``_base_ = 'atomnas_mm::...'``
resolve; it changes nothing of how mmengine or torch behave for other
packages. Safe checkpoint loading (torch's weights-only unpickler with what
an mmengine checkpoint needs, one-line errors) is switched on by our tools
and hooks for the runs that use them. The framework internals this touches
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

from .utils import register_config_package  # noqa: E402
from .version import __version__  # noqa: E402

register_config_package()

from . import datasets, engine, models  # noqa: E402,F401  (registries)

__all__ = ['__version__']
