"""mmengine's CheckpointHook, with an intact checkpoint at every moment."""
from mmengine.hooks import CheckpointHook as _CheckpointHook

from ...registry import HOOKS
from ...utils.seams import save_checkpoint_safely


@HOOKS.register_module()
class CheckpointHook(_CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments), except for how a
    checkpoint is written: to a temporary name, then renamed, and the
    oldest checkpoint beyond ``max_keep_ckpts`` is deleted only after that.
    A kill at any moment leaves the previous checkpoint intact, and never a
    truncated file under a checkpoint's name.

    Use it as ``default_hooks.checkpoint.type='atomnas_mm.CheckpointHook'``
    (every config of this package does).
    """

    def _save_checkpoint_with_step(self, runner, step, meta):
        save_checkpoint_safely(self, runner, step, meta)
