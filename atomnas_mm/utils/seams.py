"""Every place where atomnas_mm relies on internals of mmengine (or torch),
in one module.

Each seam is one function, written against the versions in ``TESTED``; on
first use it checks the installed version and warns once, in one line, when
it differs (the seam may still work, but nobody has checked). Each seam has
a test in ``tests/test_utils/test_seams.py`` that fails when the internal it
relies on changes.

Seams:
    * ``mark_initialized`` / ``adopt_new_params``: ``BaseModule._is_init`` and
      ``_params_init_info`` (mmengine's init bookkeeping).
    * ``is_resuming``: ``Runner._resume``.
    * ``accumulation_of``: ``OptimWrapper._accumulative_counts``.
    * ``refresh_averaged_model``: ``BaseAveragedModel.avg_parameters``.
    * ``rewrap``: rebuilding the runner's DDP wrapper (``Runner.wrap_model``
      and assigning ``runner.model``).
    * ``register_config_package``: ``MODULE2PACKAGE`` and
      ``get_installed_path`` of mmengine's config loader (for our package
      only).
    * ``plain_history_buffers``: how ``HistoryBuffer`` pickles, while one of
      our checkpoints is written.
    * ``mmengine_checkpoint_globals``: what torch's weights-only unpickler
      must allow for an mmengine checkpoint (while one is read).
    * ``use_safe_checkpoint_loading``: mmengine's loader of local files.
    * ``setup_launcher``: the ``pytorch`` launcher and DDP wrapper on CPUs.
    * ``safe_checkpoint_hook``: ``CheckpointHook._save_checkpoint_with_step``.
    * ``BatchNormBase``, ``ParamSchedulerBase``: torch's and mmengine's
      private base classes (``_BatchNorm``, ``_ParamScheduler``), imported
      here only.

Importing ``atomnas_mm`` changes nothing of mmengine's or torch's behaviour
for other packages: the config-base fallback answers only for
``atomnas_mm``, the checkpoint allow-list applies inside our own loader
only, message-hub buffers pickle differently only while our
``CheckpointHook`` writes, and our loader replaces mmengine's for local
files only once a run uses our tools or hooks
(:func:`use_safe_checkpoint_loading`).
"""
from __future__ import annotations

import contextlib
import copyreg
import functools
import os
import os.path as osp
import warnings
from typing import Callable, Dict

import torch

from mmengine.optim.scheduler.param_scheduler import \
    _ParamScheduler as ParamSchedulerBase  # noqa: F401
from torch.nn.modules.batchnorm import \
    _BatchNorm as BatchNormBase  # noqa: F401

TESTED: Dict[str, str] = {'mmengine': '0.10.7', 'torch': '2.14.1'}
_warned: set = set()


def installed_version(package: str) -> str:
    if package == 'torch':
        return torch.__version__.split('+')[0]
    import importlib.metadata
    return importlib.metadata.version(package)


def _seam(package: str) -> Callable:
    """Mark a function as a seam into ``package``'s internals: warn once
    when the installed version is not the tested one."""

    def deco(fn: Callable) -> Callable:

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            key = (package, fn.__name__)
            if key not in _warned:
                _warned.add(key)
                found = installed_version(package)
                if found != TESTED[package]:
                    warnings.warn(
                        f'atomnas_mm.{fn.__name__} relies on internals of '
                        f'{package} {TESTED[package]}; found {found}: run '
                        'tests/test_utils/test_seams.py', stacklevel=2)
            return fn(*args, **kwargs)

        wrapper.seam_of = package
        return wrapper

    return deco


# ------------------------------------------------------------ model init
@_seam('mmengine')
def mark_initialized(module) -> None:
    """Tell mmengine that ``module.init_weights`` has run, so that a parent
    does not call it again."""
    module._is_init = True


@_seam('mmengine')
def adopt_new_params(module) -> None:
    """Parameters created while mmengine initialises a model (a net that
    reshapes to the weights it loads) are unknown to its init bookkeeping,
    which then asserts; record them as initialised by loading."""
    info = getattr(module, '_params_init_info', None)
    if info is None:
        return
    for name, p in module.named_parameters():
        if p not in info:
            info[p]['init_info'] = f'loaded into {type(module).__name__}'
            info[p]['tmp_mean_value'] = p.data.mean().cpu()


# ------------------------------------------------------------ runner
@_seam('mmengine')
def is_resuming(runner) -> bool:
    """Whether the runner resumes (``--resume``) rather than only loading
    weights (``load_from``)."""
    return bool(runner._resume)


@_seam('mmengine')
def accumulation_of(optim_wrapper) -> int:
    """How many iterations an optimizer step accumulates
    (``optim_wrapper.accumulative_counts`` of the config; 1 without)."""
    return int(getattr(optim_wrapper, '_accumulative_counts', 1) or 1)


@_seam('mmengine')
def refresh_averaged_model(averaged) -> None:
    """After the parameters of an EMA copy were replaced, rebuild its
    name -> tensor table, which holds the old objects."""
    averaged.avg_parameters = averaged.module.state_dict() \
        if averaged.update_buffers else dict(averaged.module.named_parameters())


@_seam('mmengine')
def rewrap(runner) -> None:
    """After the model's parameters were replaced: rebuild the runner's
    DDP wrapper around them (DDP keeps per-parameter buckets and hooks;
    the old wrapper goes first, so two never hold the process group's
    buffers at once). No-op without a wrapper."""
    import gc

    from mmengine.model import is_model_wrapper
    if not is_model_wrapper(runner.model):
        return
    module = runner.model.module
    old = runner.model
    runner.model = None
    del old
    gc.collect()
    runner.model = runner.wrap_model(runner.cfg.get('model_wrapper_cfg'),
                                     module)


# ------------------------------------------------------------ config bases
@_seam('mmengine')
def register_config_package() -> None:
    """Make ``_base_ = 'atomnas_mm::atomnas/...'`` resolvable.

    mmengine resolves ``pkg::path`` bases only for packages in its
    hard-coded ``MODULE2PACKAGE``, and finds a package's folder from its
    distribution's location, which for a PEP 660 editable install is
    site-packages, where the package is not. We add our package and, when
    that folder does not exist, fall back to where Python imports the
    package from. Idempotent.
    """
    import importlib.util

    from mmengine.config import config, utils
    utils.MODULE2PACKAGE.setdefault('atomnas_mm', 'atomnas_mm')
    original = config.get_installed_path
    if getattr(original, '_atomnas_fallback', False):
        return

    def get_installed_path(package: str) -> str:
        path = original(package)
        if package == 'atomnas_mm' and not osp.isdir(path):
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.origin is not None:
                return osp.dirname(spec.origin)
        return path

    get_installed_path._atomnas_fallback = True
    config.get_installed_path = get_installed_path


# ------------------------------------------------------------ safe loading
def mmengine_checkpoint_globals() -> list:
    """The globals that a real mmengine Runner checkpoint holds, once
    :func:`plain_history_buffers` has made message-hub buffers pickle
    as plain constructor calls: the message-hub buffer class and numpy's
    array, scalar and dtype reconstructors. Nothing that reaches an
    attribute of an arbitrary object (``builtins.getattr``)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    return [
        HistoryBuffer,
        _reconstruct,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),  # numpy.dtypes.Float64DType
        type(np.dtype(np.int64)),  # numpy.dtypes.Int64DType
        scalar,
    ]


def _history_buffer_reduce(self):
    # HistoryBuffer.__getstate__ stores the class's table of statistics
    # methods, which pickle as getattr(HistoryBuffer, 'mean'): loading that
    # needs builtins.getattr on the allow-list, and getattr reaches anything.
    # A buffer with only the default methods pickles as a plain constructor
    # call instead (the constructor registers the defaults again).
    defaults = {'min', 'max', 'current', 'mean'}
    if set(type(self)._statistics_methods) <= defaults:
        return type(self), (self._log_history, self._count_history,
                            self.max_length)
    return copyreg.__newobj__, (type(self), ), self.__getstate__()


@contextlib.contextmanager
def plain_history_buffers():
    """While a checkpoint is written: message-hub buffers pickle as plain
    constructor calls, which the safe loader allows, instead of through
    ``builtins.getattr``, which it refuses (see :func:`_history_buffer_reduce`).
    Our ``CheckpointHook`` and ``tools/misc/trust_checkpoint.py`` write
    inside it; nothing else changes."""
    from mmengine.logging.history_buffer import HistoryBuffer
    had = '__reduce__' in HistoryBuffer.__dict__
    old = HistoryBuffer.__dict__.get('__reduce__')
    HistoryBuffer.__reduce__ = _history_buffer_reduce
    try:
        yield
    finally:
        if had:
            HistoryBuffer.__reduce__ = old
        else:
            del HistoryBuffer.__reduce__


@_seam('mmengine')
def use_safe_checkpoint_loading() -> None:
    """Route mmengine's loading of local checkpoint files (resume,
    ``load_from``, mmengine's ``Pretrained``) through
    :func:`atomnas_mm.models.checkpoint.load_checkpoint_file`: torch's
    weights-only loading that allows exactly what an mmengine checkpoint
    holds (:func:`mmengine_checkpoint_globals`, inside that call only),
    with one-line errors that name the file. Called by our tools and by
    our hooks' ``before_run``, before a runner loads anything; idempotent.
    (mmengine itself calls ``torch.load`` with torch's default, which from
    torch 2.6 refuses every mmengine checkpoint.)"""
    from mmengine.runner.checkpoint import CheckpointLoader
    current = CheckpointLoader._schemes.get('')
    if getattr(current, '_atomnas', False):
        return

    def load_from_local(filename, map_location):
        from ..models.checkpoint import load_checkpoint_file
        return load_checkpoint_file(osp.expanduser(filename), map_location)

    load_from_local._atomnas = True
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local,
                                     force=True)


# ------------------------------------------------------------ launching
@_seam('mmengine')
def setup_launcher(cfg) -> None:
    """Prepare ``cfg`` for its launcher.

    mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device``
    and defaults to NCCL, and its DDP wrapper passes ``device_ids``, all of
    which fail for CPU processes. Without CUDA we start the gloo process
    group ourselves (mmengine then skips its own set-up) and wrap with
    ``device_ids=None``. With CUDA nothing changes.
    """
    import torch.distributed as dist
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        if cfg.launcher != 'pytorch':
            raise RuntimeError(f'launcher {cfg.launcher!r} needs CUDA here; '
                               'on CPU use --launcher pytorch (torchrun)')
        dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def teardown_launcher() -> None:
    """End the gloo process group :func:`setup_launcher` started, once every
    rank is done.

    A process that exits with the group alive can abort in gloo's
    destructor ("terminate called without an active exception", SIGABRT,
    seen in CI on a two-process CPU run after training had finished), which
    torchrun reports as a failed run. No-op without a group or with CUDA
    (mmengine owns that group).
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and \
            dist.get_backend() == 'gloo':
        dist.barrier()
        dist.destroy_process_group()


# ------------------------------------------------------------ checkpoints
def safe_checkpoint_hook(base: type) -> type:
    """mmengine's ``CheckpointHook`` with its private
    ``_save_checkpoint_with_step`` replaced by :func:`save_checkpoint_safely`
    (the subclass is made here so that the override of a private method
    lives in this module)."""

    class SafeCheckpointHook(base):

        def before_run(self, runner) -> None:
            use_safe_checkpoint_loading()
            super().before_run(runner)

        def _save_checkpoint_with_step(self, runner, step, meta):
            save_checkpoint_safely(self, runner, step, meta)

    return SafeCheckpointHook


@_seam('mmengine')
def save_checkpoint_safely(hook, runner, step: int, meta: dict) -> None:
    """``CheckpointHook._save_checkpoint_with_step``, reordered so that an
    intact checkpoint exists at every moment.

    mmengine deletes the oldest kept checkpoint before writing the new one,
    and writes it in place: a kill during the write leaves a truncated
    newest file and, with ``max_keep_ckpts=1``, nothing else. Here the new
    checkpoint is written to a temporary name and renamed (atomic on one
    file system), ``last_checkpoint`` likewise, and only then is the oldest
    deleted.
    """
    from mmengine.dist import is_main_process
    from mmengine.fileio import LocalBackend
    from mmengine.hooks import CheckpointHook
    if not isinstance(hook.file_backend, LocalBackend):
        return CheckpointHook._save_checkpoint_with_step(hook, runner, step,
                                                         meta)
    stale = None
    if hook.max_keep_ckpts > 0 and not (hook.keep_ckpt_ids and
                                        hook.keep_ckpt_ids[-1] == step):
        if len(hook.keep_ckpt_ids) == hook.max_keep_ckpts:
            stale = hook.keep_ckpt_ids[0]
        hook.keep_ckpt_ids.append(step)  # a bounded deque drops the oldest
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(hook.keep_ckpt_ids))
    filename = hook.filename_tmpl.format(step)
    hook.last_ckpt = osp.join(hook.out_dir, filename)
    runner.message_hub.update_info('last_ckpt', hook.last_ckpt)
    with plain_history_buffers():
        runner.save_checkpoint(
            hook.out_dir, filename + '.tmp', hook.file_client_args,
            save_optimizer=hook.save_optimizer,
            save_param_scheduler=hook.save_param_scheduler, meta=meta,
            by_epoch=hook.by_epoch, backend_args=hook.backend_args,
            **hook.args)
    if not is_main_process():
        return
    os.replace(hook.last_ckpt + '.tmp', hook.last_ckpt)
    pointer = osp.join(runner.work_dir, 'last_checkpoint')
    with open(pointer + '.tmp', 'w') as f:
        f.write(hook.last_ckpt)
    os.replace(pointer + '.tmp', pointer)
    if stale is not None and stale != step:
        old = osp.join(hook.out_dir, hook.filename_tmpl.format(stale))
        if osp.isfile(old):
            os.remove(old)
