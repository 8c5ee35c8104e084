"""Registries of the ``atomnas_mm`` scope.

Children of mmengine's root registries, so a config in the mmpretrain or
mmdet scope finds our classes as ``type='atomnas_mm.AtomNASNet'``, and a
config in our own scope (``default_scope='atomnas_mm'``) finds them by bare
name while still reaching everything registered in mmengine's root.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as \
    MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='atomnas_mm',
    locations=['atomnas_mm.models'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='atomnas_mm',
    locations=['atomnas_mm.engine'])
OPTIMIZERS = Registry(
    'optimizer', parent=MMENGINE_OPTIMIZERS, scope='atomnas_mm',
    locations=['atomnas_mm.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='atomnas_mm',
    locations=['atomnas_mm.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='atomnas_mm',
    locations=['atomnas_mm.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
    scope='atomnas_mm', locations=['atomnas_mm.engine'])
# Found from any scope as ``type='atomnas_mm.TestbedDataset'``; the first
# look-up imports atomnas_mm.datasets itself (``locations``).
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope='atomnas_mm',
    locations=['atomnas_mm.datasets'])
