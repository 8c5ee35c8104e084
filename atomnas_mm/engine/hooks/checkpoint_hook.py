"""mmengine's CheckpointHook, with an intact checkpoint at every moment."""
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

from ...registry import HOOKS
from ...utils.seams import safe_checkpoint_hook


@HOOKS.register_module()
class CheckpointHook(safe_checkpoint_hook(MMEngineCheckpointHook)):
    """mmengine's ``CheckpointHook`` (same arguments), except for how a
    checkpoint is written: to a temporary name, then renamed, and the
    oldest checkpoint beyond ``max_keep_ckpts`` is deleted only after that.
    A kill at any moment leaves the previous checkpoint intact, and never a
    truncated file under a checkpoint's name. Message-hub buffers are
    pickled so that the safe loader reads them, and the run loads
    checkpoints through it (see :mod:`atomnas_mm.utils.seams`).

    Use it as ``default_hooks.checkpoint.type='atomnas_mm.CheckpointHook'``
    (every config of this package does).
    """
