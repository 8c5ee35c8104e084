"""tools/export_arch.py on the checkpoints of a real tiny search.

The search runs once per session (:func:`tiny_search`); the other tool
tests reuse its work dir.
"""
import contextlib
import copy
import glob
import importlib.util
import json
import os.path as osp
import shutil
from typing import Dict

import pytest
import torch

from atomnas_mm.models.arch import load_spec
from atomnas_mm.models.checkpoint import load_checkpoint_file
from atomnas_mm.utils.seams import plain_history_buffers
from tests.conftest import (ROOT, TINY_SPEC, image_classifier,
                            search_cfg)

_spec = importlib.util.spec_from_file_location(
    'export_arch', osp.join(ROOT, 'tools', 'export_arch.py'))
export_arch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_arch)

_SEARCHES: Dict[str, str] = {}


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: the tiny net gains nothing from more, and
    on a busy shared CPU extra threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_search(tmp_path_factory, digits_root: str) -> str:
    """Work dir of one tiny search (2 epochs, shrinks, EMA on), run the
    first time any tool test asks for it."""
    if 'dir' not in _SEARCHES:
        from mmengine.runner import Runner
        work_dir = str(tmp_path_factory.mktemp('tool_search'))
        with one_thread():
            Runner.from_cfg(search_cfg(work_dir, digits_root,
                                       copy.deepcopy(TINY_SPEC))).train()
        _SEARCHES['dir'] = work_dir
    return _SEARCHES['dir']


@pytest.fixture(scope='module')
def search_dir(tmp_path_factory, digits_root):
    return tiny_search(tmp_path_factory, digits_root)


def _load(path):
    return load_checkpoint_file(path)


def _ema(ckpt):
    return {k[len('module.'):]: v for k, v in ckpt['ema_state_dict'].items()
            if k != 'steps'}


def _is_bn_stat(key):
    return key.endswith(('running_mean', 'running_var',
                         'num_batches_tracked'))


def test_spec_of_checkpoint(search_dir, tmp_path, capsys):
    ckpt_path = osp.join(search_dir, 'epoch_2.pth')
    out = export_arch.main([ckpt_path, '--out-dir', str(tmp_path)])
    assert out == {'arch': str(tmp_path / 'epoch_2_arch.json')}
    assert out['arch'] in capsys.readouterr().out
    saved = load_spec(_load(ckpt_path)['meta']['atomnas_spec'])
    exported = load_spec(out['arch'])
    assert exported == saved
    assert exported != load_spec(TINY_SPEC)  # the search did shrink
    # The one at the end of training is the hook's searched_arch.json.
    assert exported == load_spec(osp.join(search_dir, 'searched_arch.json'))


def test_default_out_dir_is_the_checkpoints(search_dir, tmp_path):
    ckpt = shutil.copy(osp.join(search_dir, 'epoch_1.pth'), tmp_path)
    out = export_arch.main([ckpt])
    assert out['arch'] == str(tmp_path / 'epoch_1_arch.json')
    assert load_spec(out['arch']) == load_spec(
        _load(ckpt)['meta']['atomnas_spec'])


def test_deploy_takes_ema_weights_and_loads_strictly(search_dir, tmp_path):
    ckpt_path = osp.join(search_dir, 'epoch_2.pth')
    out = export_arch.main([ckpt_path, '--out-dir', str(tmp_path),
                            '--deploy'])
    assert out['deploy'] == str(tmp_path / 'epoch_2_deploy.pth')
    ckpt, deployed = _load(ckpt_path), _load(out['deploy'])
    assert deployed['meta']['atomnas_spec'] == ckpt['meta']['atomnas_spec']
    assert deployed['meta']['ema'] is True
    ema, state = _ema(ckpt), deployed['state_dict']
    assert 'steps' not in state and state.keys() == ema.keys()
    assert state.keys() == ckpt['state_dict'].keys()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    # EMA (momentum 0.1) lags the trained weights: it is really the EMA.
    assert not all(torch.equal(state[k], ckpt['state_dict'][k])
                   for k in state)

    spec = load_spec(out['arch'])
    model = image_classifier(out['arch'], 10)
    model.load_state_dict(state, strict=True)
    assert model.backbone.arch_spec == spec  # no reshaping was needed
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 16, 16), mode='tensor')
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()

    from atomnas_mm.models.backbones import AtomNASNet
    net = AtomNASNet(arch=out['arch'])
    net.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()
                         if k.startswith('backbone.')}, strict=True)
    assert net.arch_spec == spec


def test_deploy_without_ema_takes_state_dict(search_dir, tmp_path):
    ckpt = _load(osp.join(search_dir, 'epoch_2.pth'))
    del ckpt['ema_state_dict']
    with plain_history_buffers():  # as our CheckpointHook writes it
        torch.save(ckpt, tmp_path / 'plain.pth')
    out = export_arch.main([str(tmp_path / 'plain.pth'), '--deploy'])
    deployed = _load(out['deploy'])
    assert deployed['meta']['ema'] is False
    assert deployed['state_dict'].keys() == ckpt['state_dict'].keys()
    assert all(torch.equal(v, ckpt['state_dict'][k])
               for k, v in deployed['state_dict'].items())


def test_recalibration_with_config(search_dir, tmp_path):
    ckpt_path = osp.join(search_dir, 'epoch_2.pth')
    # The runner dumps the full config (data root included) in the work dir.
    config, = glob.glob(osp.join(search_dir, '*.py'))
    with one_thread():
        out = export_arch.main([ckpt_path, '--out-dir', str(tmp_path),
                                '--deploy', '--config', config,
                                '--recalib-batches', '2'])
    deployed = _load(out['deploy'])
    assert deployed['meta']['recalib_batches'] == 2
    ema, state = _ema(_load(ckpt_path)), deployed['state_dict']
    assert state.keys() == ema.keys()
    # Weights untouched; every BN's statistics recomputed over 2 batches.
    for k in ema:
        if not _is_bn_stat(k):
            assert torch.equal(state[k], ema[k]), k
    means = [k for k in ema if k.endswith('running_mean')]
    assert means
    assert all(not torch.allclose(state[k], ema[k]) for k in means)
    assert all(int(state[k]) == 2 for k in state
               if k.endswith('num_batches_tracked'))
    image_classifier(out['arch'], 10).load_state_dict(state, strict=True)


def test_missing_file(tmp_path):
    with pytest.raises(SystemExit, match='nope.pth: no such checkpoint'):
        export_arch.main([str(tmp_path / 'nope.pth')])


def test_checkpoint_without_spec(tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': {}}, path)
    with pytest.raises(SystemExit) as e:
        export_arch.main([str(path), '--deploy'])
    msg = str(e.value)
    assert 'plain.pth' in msg and 'atomnas_spec' in msg and '\n' not in msg
    assert not list(tmp_path.glob('*_arch.json'))


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / 'spec.json'
    path.write_text(json.dumps(TINY_SPEC))
    with pytest.raises(SystemExit, match='spec.json: cannot be read as a checkpoint'):
        export_arch.main([str(path)])


def test_recalibration_needs_config(search_dir, capsys):
    with pytest.raises(SystemExit):
        export_arch.main([osp.join(search_dir, 'epoch_2.pth'), '--deploy',
                          '--recalib-batches', '2'])
    assert 'needs --config' in capsys.readouterr().err


def test_spec_contradicting_weights_is_refused(search_dir, tmp_path):
    ckpt = _load(osp.join(search_dir, 'epoch_2.pth'))
    ckpt['meta']['atomnas_spec'] = copy.deepcopy(TINY_SPEC)  # the supernet
    path = tmp_path / 'lying.pth'
    with plain_history_buffers():  # as our CheckpointHook writes it
        torch.save(ckpt, path)
    with pytest.raises(SystemExit, match=r'lying.pth: its spec .* says '
                       r'blocks\[\d\] has kernels .* but its weights'):
        export_arch.main([str(path), '--deploy', '--out-dir',
                          str(tmp_path / 'out')])
    assert not (tmp_path / 'out').exists() or not list(
        (tmp_path / 'out').iterdir())


def test_recalibration_defaults_to_the_configs_hook(search_dir, tmp_path):
    """One recalibration setting: the config's BNRecalibrationHook
    (num_batches=2 in the test search) serves the export too."""
    config, = glob.glob(osp.join(search_dir, '*.py'))
    with one_thread():
        out = export_arch.main([osp.join(search_dir, 'epoch_2.pth'),
                                '--out-dir', str(tmp_path), '--deploy',
                                '--config', config])
    assert _load(out['deploy'])['meta']['recalib_batches'] == 2
    # The search's own deploy.pth used the same number.
    assert _load(osp.join(search_dir, 'deploy.pth'))['meta'][
        'recalib_batches'] == 2
