"""Distributed set-up that also works on machines without a GPU."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config


def setup_launcher(cfg: Config) -> None:
    """Prepare ``cfg`` for its launcher.

    mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device``
    and defaults to NCCL, and its DDP wrapper passes ``device_ids``, all of
    which fail for CPU processes. Without CUDA we start the gloo process
    group ourselves (mmengine then skips its own set-up) and wrap with
    ``device_ids=None``. With CUDA nothing changes.
    """
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
