"""Our search replays the authors' step for step.

``tests/data/authors_reference.pt`` was recorded by
``tools/misc/record_reference.py`` from the authors' own code (their
training step, RMSprop, EMA, lr and penalty schedules and shrink), in
float64 on a small supernet: 60 steps with lr warm-up, a staircase decay,
label smoothing, a lambda ramp, the delta gate on atoms dead by alpha_hat,
and the last epoch's removal by alpha_hat alone. Here the same supernet,
initial weights and batches go through our real Runner, optimizer wrapper,
hooks and optimizer, configured from the recorded recipe as a user would
configure a search. Every step's lr, task loss and penalty must agree, the
same atoms must go at the same checks, and the optimizer state of every
surviving gamma must be the same after each check.
"""
import os.path as osp
import sys

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

from atomnas_mm.engine import DynamicShrinkHook
from atomnas_mm.models import load_spec
from tests.conftest import ROOT

FIXTURE = osp.join(ROOT, 'tests', 'data', 'authors_reference.pt')
sys.path.insert(0, osp.join(ROOT, 'tools', 'misc'))
from record_reference import normalise  # noqa: E402


class _Images(Dataset):
    """The recorded batches. The label-smoothed target rides along as a
    soft score in float64: mmpretrain's LabelSmoothLoss builds it in
    float32 (a 4e-8 difference of the loss from step 0, which RMSprop with
    eps inside the root amplifies ~10x per step); the same loss in float64
    is mmpretrain's soft cross-entropy on that score
    (test_label_smoothing_is_the_soft_cross_entropy checks the two agree)."""

    def __init__(self, images, labels, smooth, classes=10):
        from mmpretrain.structures import DataSample
        self.items = []
        for img, lab in zip(images, labels):
            score = torch.full((classes, ), smooth / classes,
                               dtype=torch.float64)
            score[int(lab)] += 1 - smooth
            self.items.append(dict(inputs=img, data_samples=DataSample(
            ).set_gt_label(int(lab)).set_gt_score(score)))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class _Float64(BaseDataPreprocessor):
    """The recorder's normalisation, in float64."""

    def forward(self, data, training=False):
        return dict(inputs=normalise(torch.stack(data['inputs'])),
                    data_samples=data['data_samples'])


class _Record(Hook):
    """What the recorder wrote, from our run."""

    priority = 'LOW'  # after the shrink hook's epoch end

    def __init__(self, gamma_steps):
        self.gamma_steps = set(gamma_steps)
        self.steps, self.gammas, self.checks = [], {}, []
        self.alive, self.removed = None, {}

    def before_train(self, runner):
        shrink = next(h for h in runner.hooks
                      if isinstance(h, DynamicShrinkHook))
        self.net = runner.model.backbone
        self.alive = {f'{i}.{k}': list(range(n)) for i, b in enumerate(
            self.net.arch_spec.blocks) for k, n in b.kernels.items()}
        told = shrink.state.after_reshape

        def after_reshape(plan):  # the transaction tells the search state
            for i, kernels in plan.items():
                for key in [key for key in self.alive
                            if int(key.split('.')[0]) == i]:
                    keep = [int(j) for j in kernels.get(
                        int(key.split('.')[1]), [])]
                    gone = [a for j, a in enumerate(self.alive[key])
                            if j not in keep]
                    if gone:
                        self.removed.setdefault(key, []).extend(gone)
                    self.alive[key] = [self.alive[key][j] for j in keep]
                    if not self.alive[key]:
                        del self.alive[key]
            told(plan)

        shrink.state.after_reshape = after_reshape

    def _gammas(self):
        return {f'{i}.{k}': bn.weight.detach().clone()
                for i, b in enumerate(self.net.blocks)
                for k, bn in b.importance_bns().items()}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lr = runner.optim_wrapper.param_groups[0]['lr']
        if runner.iter in self.gamma_steps:
            self.gammas[runner.iter] = self._gammas()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        hub = runner.message_hub
        self.steps.append(dict(
            lr=self.lr, loss=float(outputs['loss']),
            l1=hub.get_scalar('train/l1_lambda').current() *
            hub.get_scalar('train/l1_penalty').current()))

    def after_train_epoch(self, runner):
        opt = runner.optim_wrapper.optimizer
        state = {}
        for i, b in enumerate(self.net.blocks):
            for k, bn in b.importance_bns().items():
                st = opt.state[bn.weight]
                state[f'{i}.{k}'] = torch.stack(
                    [st['square_avg'], st['momentum_buffer']])
        self.checks.append(dict(removed={k: sorted(v) for k, v in sorted(
            self.removed.items())},
                                alive=dict(self.alive), optimizer=state))
        self.removed = {}


def replay(ref, work_dir, optimizer=None, shrink=None):
    """Our search, configured from the recorded recipe (``optimizer`` /
    ``shrink``: options that change it)."""
    r = ref['recipe']
    lr = r['base_lr'] * r['batch'] / r['base_total_batch']
    spec = load_spec(ref['spec'])
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='atomnas_mm.AtomNASNet', arch=ref['spec'],
                          norm_cfg=dict(type='BN',
                                        momentum=r['batch_norm_momentum'],
                                        eps=r['batch_norm_epsilon'])),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='atomnas_mm.DropoutLinearClsHead',
                      dropout_rate=r['dropout_ratio'], num_classes=10,
                      in_channels=spec.head_channels,
                      loss=dict(type='CrossEntropyLoss', use_soft=True)),
            data_preprocessor=_Float64()))
    init = str(work_dir / 'init.pth')
    torch.save(dict(state_dict={k: v.double() if v.is_floating_point()
                                else v for k, v in ref['init'].items()}),
               init)
    record = _Record(r['gamma_steps'])
    runner = Runner(
        model=model, work_dir=str(work_dir),
        train_dataloader=DataLoader(_Images(ref['images'], ref['labels'],
                                            r['label_smoothing']),
                                    batch_size=r['batch'], shuffle=False,
                                    collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=True, max_epochs=r['epochs']),
        optim_wrapper=dict(
            type='atomnas_mm.AtomNASOptimWrapper',
            constructor='atomnas_mm.AtomNASOptimWrapperConstructor',
            optimizer={**dict(type='atomnas_mm.AtomNASRMSprop', lr=lr,
                              alpha=r['alpha'], eps=r['epsilon'],
                              momentum=r['momentum'],
                              weight_decay=r['weight_decay']),
                       **(optimizer or {})},
            penalty=dict(weight=r['rho'], ramp_epochs=r['rho_warmup_epochs'],
                         input_size=32)),
        param_scheduler=dict(
            type='atomnas_mm.WarmupExpDecayLR', warmup=r['epoch_warmup'],
            start_factor=r['base_lr'] / lr,
            decay_every=r['exp_decay_epoch_interval'],
            gamma=r['exp_decaying_lr_gamma'], by_epoch=True,
            convert_to_iter_based=True),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=10),
                           checkpoint=dict(type='CheckpointHook',
                                           interval=100)),
        custom_hooks=[
            dict(type='atomnas_mm.DynamicShrinkHook',
                 threshold=r['model_shrink_threshold'],
                 delta=r['model_shrink_delta_flops'], input_size=32,
                 **(shrink or {})),
            dict(type='atomnas_mm.EMAHook', priority='ABOVE_NORMAL',
                 momentum=1 - r['moving_average_decay'] ** (
                     r['batch'] / r['moving_average_decay_base_batch'])),
            record],
        load_from=init, default_scope='mmpretrain',
        randomness=dict(seed=0))
    runner.model.double()
    runner.train()
    return record


def test_label_smoothing_is_the_soft_cross_entropy():
    """What the configs use (LabelSmoothLoss, 'original') is the soft
    cross-entropy the replay uses, up to LabelSmoothLoss's float32
    targets."""
    from mmpretrain.models.losses import CrossEntropyLoss, LabelSmoothLoss
    torch.manual_seed(0)
    x = torch.randn(8, 10, dtype=torch.float64)
    y = torch.randint(0, 10, (8, ))
    score = torch.full((8, 10), 0.01, dtype=torch.float64)
    score[torch.arange(8), y] += 0.9
    smooth = LabelSmoothLoss(label_smooth_val=0.1, mode='original')(x, y)
    soft = CrossEntropyLoss(use_soft=True)(x, score)
    assert float(smooth) == pytest.approx(float(soft), rel=1e-7)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    ref = torch.load(FIXTURE, weights_only=False)
    return ref, replay(ref, tmp_path_factory.mktemp('replay'))


def test_every_step_matches(runs):
    ref, ours = runs
    assert len(ours.steps) == len(ref['steps']) == 60
    for s, (a, b) in enumerate(zip(ref['steps'], ours.steps)):
        assert b['lr'] == pytest.approx(a['lr'], rel=1e-12), s
        assert b['loss'] == pytest.approx(a['loss'], rel=1e-6), s
        assert b['l1'] == pytest.approx(a['l1'], rel=1e-6, abs=1e-12), s
    for s, gammas in ref['gammas'].items():
        assert gammas.keys() == ours.gammas[s].keys(), s
        for key, g in gammas.items():
            assert torch.allclose(ours.gammas[s][key], g, rtol=1e-6,
                                  atol=1e-7), (s, key)


def test_same_atoms_go_at_the_same_checks(runs):
    ref, ours = runs
    assert len(ours.checks) == len(ref['checks'])
    assert sum(len(v) for c in ref['checks'] for v in c['removed'].values())
    for a, b in zip(ref['checks'], ours.checks):
        assert b['removed'] == a['removed'], a['epoch']
        assert b['alive'] == a['alive'], a['epoch']


def test_optimizer_state_of_surviving_gammas_after_each_check(runs):
    ref, ours = runs
    for a, b in zip(ref['checks'], ours.checks):
        assert a['optimizer'].keys() == b['optimizer'].keys()
        for key, state in a['optimizer'].items():
            # Differences grow from float64 rounding (1e-16 at step 0 to
            # ~1e-8 of the loss by step 60): a few 1e-6 of the buffers.
            assert torch.allclose(b['optimizer'][key], state, rtol=1e-5,
                                  atol=1e-5), (a['epoch'], key)


def test_earlier_rules_do_not_replay(runs, tmp_path):
    """The test can fail: this project's earlier search (TF RMSprop, its
    own fixed-decay alpha_hat, the gate on what is removed, no last-epoch
    removal) departs from the first step and removes other atoms."""
    ref, _ = runs
    earlier = replay(ref, tmp_path, optimizer=dict(
        type='atomnas_mm.RMSpropTF'), shrink=dict(
            importance='own', momentum=0.9999, momentum_warmup=False,
            gate='both', final_removal=False))
    assert abs(earlier.steps[1]['loss'] / ref['steps'][1]['loss'] - 1) > 1e-4
    assert [c['removed'] for c in earlier.checks] != \
        [c['removed'] for c in ref['checks']]


def test_recorder_refuses_a_folder_that_is_not_the_authors_code(tmp_path):
    import subprocess
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'misc', 'record_reference.py'),
         '--authors-code', str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f'error: {tmp_path}: not a clone of the authors')
