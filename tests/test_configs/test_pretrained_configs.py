"""The configs for the authors' published weights: evaluation with
tools/test.py, and the search to a budget on a user's image folder starting
from a converted checkpoint (written in the authors' layout by the test)."""
import json
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from atomnas_mm.models import count, load_spec
from tests.conftest import ROOT, config_path
from tests.test_models.test_converters.authors_layout import (
    authors_yml, ema_of, random_weights, save_authors_checkpoint, to_authors)
from tests.test_models.test_converters.test_authors import SMALL, converter

NET = dict(SMALL, blocks=[b for b in SMALL['blocks'] if b['kernels']])


def _convert(tmp_path, spec, num_classes):
    theirs = to_authors(random_weights(spec, num_classes, seed=7), spec,
                        fused=False)
    src = str(tmp_path / 'theirs.pt')
    save_authors_checkpoint(src, theirs, ema_of(theirs),
                            authors_yml(spec, num_classes))
    dst = str(tmp_path / 'converted.pth')
    converter.main([src, dst])
    return dst


def test_eval_config_takes_a_converted_checkpoint(tmp_path, tiny_imagenet):
    spec = load_spec(dict(NET, head_channels=1280))
    dst = _convert(tmp_path, spec, 1000)
    out = str(tmp_path / 'metrics.json')
    options = []
    for split in ('train', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={tiny_imagenet}',
                    f'{split}_dataloader.dataset.indices=4',
                    f'{split}_dataloader.batch_size=2',
                    f'{split}_dataloader.num_workers=0']
    proc = subprocess.run(
        [sys.executable, 'tools/test.py',
         config_path('atomnas', 'atomnas_pretrained_imagenet_eval.py'), dst,
         '--work-dir', str(tmp_path / 'w'), '--out', out, '--cfg-options',
         *options, 'custom_hooks.0.num_batches=2'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'backbone built from the spec in {dst}' in proc.stderr
    assert 'BN recalibration over 2 training batches' in proc.stdout + \
        proc.stderr
    assert 0 <= json.load(open(out))['accuracy/top1'] <= 100


class _Record(Hook):
    """The backbone's weights when training starts (after init_weights)."""

    def before_train(self, runner):
        self.state = {k: v.clone() for k, v in
                      runner.model.backbone.state_dict().items()}


def test_custom_budget_searches_a_converted_net(tmp_path, digits_root):
    spec = load_spec(NET)
    dst = _convert(tmp_path, spec, 1000)  # an ImageNet-style head, unused
    start = count(spec, 16, 10).macs
    target = int(0.7 * start)
    # The net to narrow to the checkpoint's spec, as 'supernet' is for the
    # published nets: the same blocks with every kernel at 6 x C_in atoms.
    supernet = tmp_path / 'supernet.json'
    supernet.write_text(json.dumps(dict(NET, blocks=[
        dict(b, kernels={k: 6 * b['in_channels'] for k in ('3', '5', '7')})
        for b in NET['blocks']])))
    cfg = Config.fromfile(config_path('atomnas', 'atomnas_custom_budget.py'))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.merge_from_dict({  # what --cfg-options would set
        'train_dataloader.dataset.data_root': digits_root,
        'val_dataloader.dataset.data_root': digits_root,
        'train_dataloader.dataset.indices': 192,
        'val_dataloader.dataset.indices': 64,
        'train_dataloader.batch_size': 32, 'val_dataloader.batch_size': 64,
        'train_dataloader.num_workers': 0, 'val_dataloader.num_workers': 0,
        'train_dataloader.dataset.pipeline.1.scale': 16,
        'val_dataloader.dataset.pipeline.1.scale': (16, 16),
        'optim_wrapper.penalty.input_size': 16,
        'optim_wrapper.penalty.target.macs': target,
        'model.head.num_classes': 10, 'model.head.in_channels': 64,
        'data_preprocessor.num_classes': 10,
        'model.backbone.arch': str(supernet),
        'model.backbone.init_cfg.checkpoint': dst,
        'train_cfg.max_epochs': 4, 'train_cfg.val_interval': 4,
        'custom_hooks.0.delta': 0, 'custom_hooks.2.num_batches': 2,
        'default_hooks.logger.interval': 1,
    })
    runner = Runner.from_cfg(cfg)
    record = _Record()
    runner.register_hook(record, priority='LOWEST')
    runner.train()  # 4 epochs of 6 iterations

    # Training started from the converted weights.
    saved = torch.load(dst, weights_only=True)['state_dict']
    assert record.state.keys() == {k[len('backbone.'):] for k in saved
                                   if k.startswith('backbone.')}
    for k, v in record.state.items():
        assert torch.equal(v, saved['backbone.' + k]), k
    # ...and ended at the target with a sub-net of it, deployable.
    final = runner.model.backbone.arch_spec
    final.check_subnet_of(spec)
    assert count(final, 16, 10).macs <= target < start
    deploy = torch.load(osp.join(cfg.work_dir, 'deploy.pth'),
                        weights_only=True)
    assert load_spec(deploy['meta']['atomnas_spec']) == final
