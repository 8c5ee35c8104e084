"""Which set-up is installed, and one line when a config needs more.

The light set-up (``make demo``) has mmcv-lite and no mmdet: classification
and the search run, detection cannot. A detection config then fails deep in
mmengine (a ``mmdet::`` base that cannot be found, a registry that imports
``mmdet.models``, a ``custom_imports`` entry, ``mmcv._ext`` missing); the
tools turn all of these into :data:`FULL_SETUP_NEEDED`.
"""
import glob
import importlib
import importlib.util
import os.path as osp
import re
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

FULL_SETUP_NEEDED = (
    "this config needs mmdet and mmcv's compiled ops, which the light set-up "
    '(make demo) does not install: run `make setup`')

# What an exception says when it comes from mmdet or mmcv's ops being absent.
_DETECTION_STACK = re.compile(r'\bmmdet\b|\bmmcv\._ext\b|\bmmcv\.ops\b')


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def detection_stack_missing(quick: bool = False) -> Optional[str]:
    """What of the detection stack is missing (None: mmdet is installed and
    mmcv's compiled ops import). ``quick``: only look for the ops' file,
    without importing torch."""
    if not _findable('mmdet'):
        return 'mmdet is not installed'
    if quick:  # the file of mmcv._ext, without importing mmcv (and torch)
        spec = importlib.util.find_spec('mmcv')
        places = (spec.submodule_search_locations or []) if spec else []
        if not any(glob.glob(osp.join(p, '_ext.*')) for p in places):
            return "mmcv's compiled ops are not installed"
        return None
    try:
        importlib.import_module('mmcv._ext')
    except ImportError as e:
        return f"mmcv's compiled ops do not import ({e})"
    return None


def _in_mmdet_scope() -> bool:
    """Whether a runner has set mmdet as the default scope (its registries
    then fail with "X is not in the mmengine::model registry")."""
    from mmengine.registry import DefaultScope
    scope = DefaultScope.get_current_instance()
    return scope is not None and scope.scope_name == 'mmdet'


def is_missing_detection_stack(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is about mmdet
    or mmcv's ops, or was raised in mmdet's scope, while that stack is in
    fact missing."""
    seen = set()
    mentioned = False
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f'{exc} {getattr(exc, "name", None) or ""}'
        if _DETECTION_STACK.search(text):
            mentioned = True
            break
        exc = exc.__cause__ or exc.__context__
    return ((mentioned or _in_mmdet_scope())
            and detection_stack_missing() is not None)


@contextmanager
def full_setup_hint() -> Iterator[None]:
    """Exit with one line instead of a traceback when what fails is a
    detection stack that this set-up does not have (tools wrap ``main()``).
    Any other error goes through unchanged."""
    try:
        yield
    except Exception as e:
        if is_missing_detection_stack(e):
            sys.exit(f'error: {FULL_SETUP_NEEDED}')
        raise


def check_config(path: str) -> None:
    """Exit with :data:`FULL_SETUP_NEEDED` when the config at ``path`` needs
    mmdet or mmcv's ops and this set-up lacks them; return otherwise (other
    errors are the tools' to report)."""
    if detection_stack_missing(quick=True) is None:
        return
    import atomnas_mm  # noqa: F401  (resolves `atomnas_mm::` bases)
    from mmengine.config import Config
    try:
        cfg = Config.fromfile(path)
        needs = _DETECTION_STACK.search(str(cfg.to_dict())) is not None
    except Exception as e:
        needs = is_missing_detection_stack(e)
    if needs:
        sys.exit(f'error: {FULL_SETUP_NEEDED}')


if __name__ == '__main__':
    if len(sys.argv) != 2:
        sys.exit('usage: python atomnas_mm/utils/stack.py CONFIG')
    check_config(sys.argv[1])
