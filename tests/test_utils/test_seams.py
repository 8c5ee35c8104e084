"""mmengine checkpoints load under torch's weights-only unpickler; code
smuggled into a pickle is refused."""
import os
import os.path as osp
import pickle

import pytest
import torch
from mmengine.runner import Runner, load_checkpoint

from atomnas_mm.utils import mmengine_checkpoint_globals
from tests.conftest import demo_cfg


def test_runner_checkpoint_with_ema_resumes(tmp_path, digits_root,
                                            tiny_spec):
    cfg = demo_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1, subset=64,
                   custom_hooks=[dict(type='EMAHook', momentum=0.1)])
    Runner.from_cfg(cfg).train()
    ckpt = osp.join(tmp_path, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    # It holds globals that torch does not allow by default (message hub,
    # numpy), and every one of them is among those we allow.
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(
            torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
    finally:
        torch.serialization.add_safe_globals(saved)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    allowed = {f'{g.__module__}.{g.__qualname__}'
               for g in mmengine_checkpoint_globals()}
    assert needed <= allowed, needed - allowed
    cfg = demo_cfg(tmp_path, digits_root, tiny_spec, max_epochs=2, subset=64,
                   custom_hooks=[dict(type='EMAHook', momentum=0.1)],
                   resume=True, load_from=ckpt)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.epoch == 2
    assert runner.iter == 2 * 1  # 64 images, batch 64: one iter per epoch


class _Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Evil(marker)}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))
    assert not marker.exists()
