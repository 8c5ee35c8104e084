"""Search to a budget with the real Runner on the digits, tiny spec: the
target is reached and held, the divisor holds after every shrink and after
a resume, bad budgets are refused at start in one line."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner

from atomnas_mm.engine import DynamicShrinkHook
from atomnas_mm.engine.utils import ema_backbone, find_ema_hook
from atomnas_mm.models import load_spec
from atomnas_mm.models.arch import build_cost_model, first_not_divisible
from atomnas_mm.models.checkpoint import load_checkpoint_file
from tests.conftest import TINY_SPEC, search_cfg
from tests.test_models.test_arch.test_cost_model import hand_table

TARGET = 100_000  # MACs at 16x16, 10 classes; the tiny supernet: 162,976


def budget_cfg(work_dir, data_root, max_epochs=6, target=TARGET, divisor=4,
               **penalty):
    cfg = search_cfg(work_dir, data_root, TINY_SPEC, max_epochs=max_epochs,
                     lam=0.05, interval=2)
    cfg.optim_wrapper.penalty.target = dict(macs=target)
    cfg.optim_wrapper.penalty.target_by = 0.5
    for key, value in penalty.items():
        cfg.optim_wrapper.penalty[key] = value
    cfg.custom_hooks[0].update(channel_divisor=divisor)
    return cfg


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, DynamicShrinkHook))


def _scalars(work_dir):
    path, = glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                               'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _set_gammas(backbone, values):
    with torch.no_grad():
        for i, block in enumerate(backbone.blocks):
            for k, bn in block.importance_bns().items():
                bn.weight.copy_(values[(i, k)])


def _group_cost(divisor=4):
    costs = build_cost_model('macs', 16, 10).atom_costs(TINY_SPEC)
    return divisor * max(costs.values())


def test_reaches_and_holds_the_target(tmp_path, digits_root):
    runner = Runner.from_cfg(budget_cfg(tmp_path, digits_root))
    runner.train()
    hook = _hook(runner)
    final = hook.cost
    assert TARGET - _group_cost() <= final <= TARGET
    assert hook.state.budget.done
    # Every spec the search wrote keeps 0 or a multiple of 4 atoms.
    specs = glob.glob(str(tmp_path / 'arch' / 'iter_*.json'))
    assert specs
    for path in specs:
        assert first_not_divisible(load_spec(path), 4) is None
    records = [r for r in _scalars(tmp_path) if 'macs' in r]
    assert len(records) == 24  # 128 images / 32 per batch x 6 epochs
    for r in records:
        assert r['cost_target'] == TARGET
        assert r['cost_gap'] == pytest.approx(r['macs'] / TARGET - 1)
        assert 'cost_plan' in r
    # Reached by target_by (after iteration 12; a record holds the cost its
    # iteration trained at): from then on lambda is 0 and the net keeps its
    # size.
    reached = next(r['iter'] for r in records if r['macs'] <= TARGET)
    assert reached <= 13
    assert all(r['l1_lambda'] == 0 and r['macs'] == final
               for r in records if r['iter'] > reached)
    budget = json.load(open(tmp_path / 'budget.json'))
    assert budget['target'] == TARGET and budget['channel_divisor'] == 4
    assert budget['target_iter'] == 12 and budget['unit'] == 'MACs'


def test_resume_keeps_the_divisor_and_the_plan(tmp_path, digits_root):
    part = budget_cfg(tmp_path / 'part', digits_root, max_epochs=2,
                      target=80_000, target_by=0.9)
    part.train_cfg.max_epochs = 2
    Runner.from_cfg(part).train()
    ckpt = str(tmp_path / 'part' / 'epoch_2.pth')
    saved = load_checkpoint_file(ckpt)
    state = saved['atomnas_search']['budget']  # the hook saves its state
    assert state['target'] == 80_000
    assert state['removed_dead'] + state['removed_ranked'] > 0  # booked
    spec = load_spec(saved['meta']['atomnas_spec'])
    assert spec != load_spec(TINY_SPEC)
    assert first_not_divisible(spec, 4) is None

    resumed = budget_cfg(tmp_path / 'part', digits_root, max_epochs=3,
                         target=80_000, target_by=0.9)
    resumed.resume, resumed.load_from = True, ckpt
    runner = Runner.from_cfg(resumed)
    loaded = {}
    hook = _hook(runner)
    original = hook.before_train

    def spy(r):  # the state right after the resume, before training on
        original(r)
        loaded.update(hook.state.budget.state_dict())
        loaded['spec'] = hook._net(r).arch_spec
    hook.before_train = spy
    runner.train()
    assert loaded.pop('spec') == spec
    assert loaded == state
    assert first_not_divisible(hook._net(runner).arch_spec, 4) is None
    # A resume with another target is refused.
    other = budget_cfg(tmp_path / 'part', digits_root, max_epochs=3,
                       target=90_000, target_by=0.9)
    other.resume, other.load_from = True, ckpt
    with pytest.raises(ValueError, match='resume with the same target'):
        Runner.from_cfg(other).train()


def test_latency_budget_with_a_table(tmp_path, digits_root):
    lut = str(tmp_path / 'lut.json')
    hand_table().dump(lut)
    cm = build_cost_model('latency', 16, 10, lut=lut)
    target = 0.6 * cm.total(TINY_SPEC)
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=4, cost='latency',
                     lut=lut)
    cfg.optim_wrapper.penalty.target = dict(latency=target)
    cfg.custom_hooks[0].delta = 0.01  # ms
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    assert hook.cost <= target and hook.cost == pytest.approx(
        cm.total(hook._net(runner).arch_spec))
    records = [r for r in _scalars(tmp_path) if 'macs' in r]
    assert all('cost' in r and r['cost_target'] == target for r in records)


def _refused(cfg, match):
    with pytest.raises(ValueError, match=match) as e:
        Runner.from_cfg(cfg).train()
    assert '\n' not in str(e.value)


@pytest.mark.parametrize('change, match', [
    (dict(target=dict(macs=2e5)), r"penalty.target.macs: 0.2M MACs is not "
     r"below the supernet's 0.163M MACs"),
    (dict(target=dict(macs=2e4)), 'below what the fixed parts'),
    (dict(target=dict(macs=3.2e4)), 'below the least a search can reach '
     'with channel_divisor=4'),
    (dict(target=dict(flops=1e5)), "unknown measure 'flops'"),
    (dict(target=dict(latency=1.0), cost='macs'), "a latency target needs "
     "penalty.cost='latency' and penalty.lut=PATH"),
    (dict(target=dict(latency=1.0)), "cost='latency' needs penalty.lut"),
    (dict(target_by=0.5, ramp_iters=2), r'target_by=0.5 is iteration 2 of '
     r'4, not after the lambda ramp \(2 iterations\): set target_by above '
     r'0.50 or shorten the ramp'),
    (dict(weight=0), 'must be > 0 with a target'),
])
def test_bad_budgets_are_refused_at_start(tmp_path, digits_root, change,
                                          match):
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=1)
    for key, value in change.items():
        cfg.optim_wrapper.penalty[key] = value
    _refused(cfg, match)


def test_bad_divisor_and_hook_settings(tmp_path, digits_root):
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=1, divisor=8)
    _refused(cfg, r'channel_divisor=8: blocks\[0\].kernels.3 has 12 atoms')
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=1)
    cfg.custom_hooks[0].num_classes = 1000
    _refused(cfg, 'DynamicShrinkHook.num_classes=1000 but the penalty counts '
             'at num_classes=10')
    lut = str(tmp_path / 'lut.json')
    hand_table(input_size=(32, 32)).dump(lut)
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=1, cost='latency',
                     lut=lut)
    cfg.optim_wrapper.penalty.target = dict(latency=5.0)
    _refused(cfg, 'measured at input 32x32 but penalty.input_size is 16x16')
    hand_table().dump(lut)
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=1, cost='latency',
                     lut=lut)
    cfg.optim_wrapper.penalty.target = dict(latency=5.0)
    cfg.custom_hooks[0].delta = 1e4
    _refused(cfg, r'delta=10000 is in ms')


def test_a_short_schedule_is_said_at_start_and_when_it_happens(
        tmp_path, digits_root):
    """RMSprop at a small lr cannot make the atoms dead within the descent:
    one warning at the start with the measured numbers, one when atoms
    still alive go by rank; validations say where the net is; the final
    line says how the target was reached."""
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=2)
    cfg.optim_wrapper.optimizer = dict(type='atomnas_mm.AtomNASRMSprop',
                                       lr=1e-3, momentum=0.9)
    cfg.train_cfg.val_interval = 1
    Runner.from_cfg(cfg).train()
    log = open(next(tmp_path.glob('*/*.log'))).read()
    start = [line for line in log.splitlines()
             if 'the planned descent is' in line]
    assert len(start) == 1
    assert 'at lr 0.001 a gamma needs about 100 to fall from 1 to 0' in \
        start[0] and 'a later penalty.target_by' in start[0]
    assert log.count('removed atoms still alive') == 1
    assert 'AtomNAS budget: validation at iter 4 with the net at' in log
    assert 'accuracy/top1' in log.split('validation at iter 4')[1][:300]
    summary = next(line for line in log.splitlines()
                   if 'AtomNAS: searched net' in line)
    assert 'target reached at step' in summary and 'by rank' in summary


@pytest.mark.parametrize('rank', ['block', 'global'])
def test_ranked_removal_against_the_block_or_the_net(tmp_path, digits_root,
                                                     rank):
    """The real hook and transaction on gammas set by hand: block 0 (the
    costliest per atom) low as a whole, as the cost-weighted penalty leaves
    it. Ranked against the net, the plan empties it; against its block's
    mean, the blocks lose their own weakest and block 0 is not emptied."""
    cfg = budget_cfg(tmp_path, digits_root, max_epochs=2,
                     plan=dict(rank=rank))
    shrink = cfg.custom_hooks[0]
    shrink.importance = 'ema'  # alpha_hat: the EMA copy's gammas
    shrink.pop('momentum')
    runner = Runner.from_cfg(cfg)
    # What Runner.train does before its loop runs.
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.train_loop  # built on first use: max_iters
    runner.call_hook('before_run')
    runner.call_hook('before_train')
    hook = _hook(runner)
    net = hook._net(runner)
    g = torch.Generator().manual_seed(0)
    before = hook.importances(runner)[0]
    assert before  # the searchable kernels
    # Gammas: block 0 in [0.05, 0.15], others in [0.3, 1.0]; alpha_hat is
    # the EMA copy's, set to the same.
    nets = (net, ema_backbone(find_ema_hook(runner)))
    values = {key: (0.05 + 0.1 * torch.rand(len(v), generator=g)
                    if key[0] == 0 else
                    0.3 + 0.7 * torch.rand(len(v), generator=g))
              for key, v in before.items()}
    for n in nets:
        _set_gammas(n, values)
    alpha, alpha_hat = hook.importances(runner)
    for key, v in values.items():
        assert torch.equal(alpha[key], v) and torch.equal(alpha_hat[key], v)
    spec0 = net.arch_spec
    atoms0 = {i: sum(b.kernels.values()) for i, b in enumerate(spec0.blocks)}
    down_to = hook.cost - 0.6 * (hook.cost - hook.state.budget.target)
    assert hook.remove_ranked(runner, down_to, 'the plan', done_iters=1)
    spec1 = net.arch_spec
    atoms1 = {i: sum(b.kernels.values()) for i, b in enumerate(spec1.blocks)}
    assert hook.cost <= down_to
    lost = {i: atoms0[i] - atoms1[i] for i in atoms0}
    if rank == 'global':
        assert atoms1[0] == 4  # what the keep-one rule and divisor 4 keep
    else:
        assert atoms1[0] > 16 and all(n > 0 for n in lost.values())
    # The atoms kept in every block are its strongest before the removal.
    after = hook.importances(runner)[0]
    for key, v in after.items():
        if len(v):
            kept = set(v.tolist())
            gone = set(values[key].tolist()) - kept
            if gone:
                assert max(gone) <= min(kept)
