import copy

import pytest
import torch
from mmengine.runner import Runner

from atomnas_mm.engine import DynamicShrinkHook
from atomnas_mm.models import AtomNASNet, load_spec
from atomnas_mm.models.checkpoint import load_checkpoint_file
from tests.conftest import demo_cfg, search_cfg


def _hook(runner):
    return next(h for h in runner.hooks if isinstance(h, DynamicShrinkHook))


def _ema_net(runner):
    from mmengine.hooks import EMAHook
    ema = next(h for h in runner.hooks if isinstance(h, EMAHook))
    return ema.ema_model.module.backbone


def test_shrink_transaction(tmp_path, digits_root, tiny_spec):
    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1,
                     subset=64, lam=1e-3, interval=1000)
    cfg.custom_hooks[0].update(threshold=1e-6)  # only atoms we kill die
    runner = Runner.from_cfg(cfg)
    runner.train()
    model, hook = runner.model, _hook(runner)
    net = model.backbone
    dead = {(1, 5): [0, 3, 7], (1, 7): list(range(16)), (2, 3): [2]}
    with torch.no_grad():
        for (i, k), idx in dead.items():
            net.blocks[i].branches[f'k{k}'].dw_bn.weight[idx] = 0
            hook.alpha_hat[(i, k)][idx] = 0
    x = torch.randn(4, 3, 16, 16)
    param = net.blocks[1].branches['k5'].dw_conv.weight
    opt = runner.optim_wrapper.optimizer
    old_state = opt.state[param]['momentum_buffer'].clone()
    model.eval()
    with torch.no_grad():
        y_eval = model(x, mode='tensor')
        snap = copy.deepcopy(model.state_dict())
        model.train()
        y_train = model(x, mode='tensor')
    model.load_state_dict(snap)

    assert hook.shrink(runner)

    spec = net.arch_spec
    assert spec.blocks[1].kernels == {3: 16, 5: 13}
    assert spec.blocks[2].kernels == {3: 15, 5: 16, 7: 16}
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x, mode='tensor'), y_eval, atol=1e-5)
        model.train()
        assert torch.allclose(model(x, mode='tensor'), y_train, atol=1e-5)
    # Optimizer state: the old state, sliced like the parameter.
    new_param = net.blocks[1].branches['k5'].dw_conv.weight
    keep = [i for i in range(16) if i not in dead[(1, 5)]]
    assert torch.equal(opt.state[new_param]['momentum_buffer'],
                       old_state[keep])
    assert param not in opt.state
    live = {id(p) for g in opt.param_groups for p in g['params']}
    assert live == {id(p) for p in model.parameters()}
    # EMA copy and alpha_hat follow.
    assert _ema_net(runner).arch_spec == spec
    assert (1, 7) not in hook.alpha_hat and len(hook.alpha_hat[(1, 5)]) == 13
    # Training goes on with the new shapes.
    runner.train_loop.run_iter(0, next(iter(runner.train_dataloader)))
    written = load_spec(str(tmp_path / 'arch' / 'latest.json'))
    assert written == spec


def test_resume_after_shrink_ends_with_same_spec(tmp_path, digits_root,
                                                 tiny_spec):
    full = search_cfg(tmp_path / 'full', digits_root, tiny_spec, max_epochs=3)
    Runner.from_cfg(full).train()
    part = search_cfg(tmp_path / 'part', digits_root, tiny_spec, max_epochs=2)
    Runner.from_cfg(part).train()
    ckpt = str(tmp_path / 'part' / 'epoch_2.pth')
    saved = load_checkpoint_file(ckpt)
    assert load_spec(saved['meta']['atomnas_spec']) != load_spec(tiny_spec)
    resumed = search_cfg(tmp_path / 'part', digits_root, tiny_spec,
                         max_epochs=3, resume=True, load_from=ckpt)
    runner = Runner.from_cfg(resumed)
    runner.train()
    assert runner.epoch == 3
    a = load_spec(str(tmp_path / 'full' / 'searched_arch.json'))
    b = load_spec(str(tmp_path / 'part' / 'searched_arch.json'))
    assert a == b and a != load_spec(tiny_spec)


def test_deploy_checkpoint_loads_into_plain_net(tmp_path, digits_root,
                                                tiny_spec):
    Runner.from_cfg(search_cfg(tmp_path / 's', digits_root, tiny_spec,
                               max_epochs=2)).train()
    spec_path = str(tmp_path / 's' / 'searched_arch.json')
    deploy = str(tmp_path / 's' / 'deploy.pth')
    # A plain config of the searched spec, none of the search hooks.
    cfg = demo_cfg(tmp_path / 't', digits_root, load_spec(spec_path
                                                          ).to_dict(),
                   subset=64, custom_hooks=[], load_from=deploy)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    assert 'accuracy/top1' in metrics
    assert runner.model.backbone.arch_spec == load_spec(spec_path)
    # And into the supernet's config: the net takes the checkpoint's shape
    # from its spec (Pretrained), not by guessing from which keys exist.
    net = AtomNASNet(tiny_spec, init_cfg=dict(
        type='Pretrained', checkpoint=deploy, prefix='backbone.'))
    net.init_weights()
    assert net.arch_spec == load_spec(spec_path)
    state = load_checkpoint_file(deploy)['state_dict']
    for k, v in net.state_dict().items():
        assert torch.equal(v, state['backbone.' + k])


def test_checkpoint_from_other_arch_is_refused(tmp_path, digits_root,
                                               tiny_spec):
    Runner.from_cfg(search_cfg(tmp_path / 's', digits_root, tiny_spec,
                               max_epochs=1)).train()
    other = copy.deepcopy(tiny_spec)
    other['blocks'][0]['kernels'] = {'3': 4}
    cfg = demo_cfg(tmp_path / 't', digits_root, other, subset=64,
                   custom_hooks=[], load_from=str(tmp_path / 's' /
                                                  'epoch_1.pth'))
    from atomnas_mm.models import SpecError
    with pytest.raises(SpecError, match='kernel'):
        Runner.from_cfg(cfg).test()


@pytest.mark.parametrize('kwargs, match', [
    (dict(momentum=1.0), 'momentum'), (dict(momentum=-0.1), 'momentum'),
    (dict(threshold=0), 'threshold'), (dict(delta=-1), 'delta')])
def test_bad_hook_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicShrinkHook(**kwargs)


def test_hook_on_model_without_atomnas(tmp_path, digits_root):
    cfg = demo_cfg(tmp_path, digits_root, subset=64,
                   custom_hooks=[dict(type='atomnas_mm.DynamicShrinkHook')])
    cfg.model.backbone = dict(type='MobileNetV2', widen_factor=0.25)
    cfg.model.head.in_channels = 1280
    with pytest.raises(ValueError, match='no AtomNASNet backbone'):
        Runner.from_cfg(cfg).train()


def test_nan_importance_stops_without_removing(tmp_path, digits_root,
                                               tiny_spec):
    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1,
                     subset=64, interval=1000)
    runner = Runner.from_cfg(cfg)
    runner.train()
    before = runner.model.backbone.arch_spec
    with torch.no_grad():
        runner.model.backbone.blocks[2].branches['k5'].dw_bn.weight[3] = \
            float('nan')
    with pytest.raises(FloatingPointError, match='block 2 kernel 5') as e:
        _hook(runner).shrink(runner)
    assert runner.model.backbone.arch_spec == before
    # It names a checkpoint that exists.
    assert f'--resume {tmp_path / "epoch_1.pth"}' in str(e.value)


def test_shrink_log_counts_like_mmengine(tmp_path, digits_root, tiny_spec):
    """Epochs and iterations from 1, as mmengine's own log lines."""
    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1,
                     subset=64)
    # Every atom whose gamma moved at all dies at the first check.
    cfg.custom_hooks[0].update(by_epoch=True, interval=1, threshold=0.999,
                               momentum=0.0)
    Runner.from_cfg(cfg).train()
    log = open(next(tmp_path.glob('*/*.log'))).read()
    # 64 images in batches of 32: the epoch's last iteration is the 2nd.
    assert 'AtomNAS shrink after epoch 1, iter 2: removed' in log
    assert 'Epoch(train) [1][2/2]' in log
    assert (tmp_path / 'arch' / 'iter_2.json').is_file()
