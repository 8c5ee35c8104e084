"""The penalty wrapper, driven by hand: it asks the search state (bound
as DynamicShrinkHook binds it) for lambda and the penalty."""
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from atomnas_mm.engine import AtomNASOptimWrapper
from atomnas_mm.engine.search import ImportanceTracker, SearchState
from atomnas_mm.models.arch import load_spec
from atomnas_mm.registry import OPTIM_WRAPPER_CONSTRUCTORS


def _classifier(arch):
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='atomnas_mm.AtomNASNet', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3,
                      in_channels=load_spec(arch).head_channels)))


def _bind(wrapper, model):
    """What DynamicShrinkHook.before_run does: a search state from the
    wrapper's penalty options, bound to it."""
    state = SearchState(model.backbone, wrapper.penalty_cfg, 3, 1e-2,
                        ImportanceTracker(0.9))
    wrapper.bind_search(state)
    return wrapper


def _build(model, cfg):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type='atomnas_mm.AtomNASOptimWrapperConstructor',
             optim_wrapper_cfg=cfg))(model)


def _wrapper(model, **penalty):
    penalty.setdefault('input_size', 32)
    cfg = dict(type='atomnas_mm.AtomNASOptimWrapper',
               optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-5),
               penalty=penalty)
    return _bind(_build(model, cfg), model)


def _set_progress(wrapper, it, max_iters=100, max_epochs=10, k=1):
    """What the hook does before every iteration."""
    wrapper.search.set_schedule(max_iters, max_epochs, k)
    wrapper.search.begin_iteration(it)


def test_costs_are_normalised_to_mean_one(tiny_spec):
    state = _wrapper(_classifier(tiny_spec), weight=1e-4).search
    spec = load_spec(tiny_spec)
    total = sum(n * state.atom_cost(i, k) for i, b in enumerate(spec.blocks)
                for k, n in b.kernels.items())
    assert total / spec.num_atoms == pytest.approx(1.0)
    # Bigger kernels and higher resolutions cost more.
    assert state.atom_cost(0, 7) > state.atom_cost(0, 3)
    assert state.atom_cost(1, 3) > state.atom_cost(3, 3)


def test_equal_penalty(tiny_spec):
    wrapper = _wrapper(_classifier(tiny_spec), weight=1e-4,
                       equal_penalty=True)
    assert {wrapper.search.atom_cost(i, k) for i in range(4)
            for k in (3, 5, 7)} == {1.0}


def test_lambda_ramps_per_iteration(tiny_spec):
    wrapper = _wrapper(_classifier(tiny_spec), weight=2e-4, ramp_epochs=2)
    # 10 iterations per epoch: the ramp spans 20 iterations.
    for it, expected in [(0, 0.0), (5, 5e-5), (10, 1e-4), (20, 2e-4),
                         (50, 2e-4)]:
        _set_progress(wrapper, it)
        assert wrapper.search.lam() == pytest.approx(expected)


def test_penalty_gradient_on_gammas(tiny_spec):
    model = _classifier(tiny_spec)
    wrapper = _wrapper(model, weight=0.01)
    _set_progress(wrapper, 100)
    bn = model.backbone.blocks[1].branches['k5'].dw_bn
    with torch.no_grad():
        bn.weight[0] = -0.5
    before = bn.weight.detach().clone()
    zero_loss = sum(p.sum() for p in model.parameters()) * 0
    wrapper.update_params(zero_loss)
    c = wrapper.search.atom_cost(1, 5)
    step = before - bn.weight.detach()
    # SGD: lr * (lambda * c * sign(gamma)); BN has no weight decay.
    assert torch.allclose(step, 0.1 * 0.01 * c * before.sign(), atol=1e-7)
    hub = MessageHub.get_current_instance()
    assert hub.get_scalar('train/l1_lambda').current() == 0.01
    assert hub.get_scalar('train/l1_penalty').current() > 0


def test_gradient_accumulation_counts_penalty_once(tiny_spec):
    model = _classifier(tiny_spec)
    cfg = dict(type='atomnas_mm.AtomNASOptimWrapper', accumulative_counts=2,
               optimizer=dict(type='SGD', lr=0.1),
               penalty=dict(weight=0.01, input_size=32))
    wrapper = _bind(_build(model, cfg), model)
    wrapper.initialize_count_status(model, 0, 2)
    _set_progress(wrapper, 100, k=2)
    bn = model.backbone.blocks[0].branches['k3'].dw_bn
    before = bn.weight.detach().clone()
    for _ in range(2):
        wrapper.update_params(sum(p.sum() for p in model.parameters()) * 0)
    step = before - bn.weight.detach()
    assert torch.allclose(step, torch.full_like(step, 0.1 * 0.01 *
                                                wrapper.search.atom_cost(0, 3)))


def test_no_weight_decay_on_bn_or_bias(tiny_spec):
    model = _classifier(tiny_spec)
    wrapper = _wrapper(model, weight=1e-4)
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            assert decay[id(m.weight)] == 0 and decay[id(m.bias)] == 0
    # The authors' rule: conv weights (depthwise too) and the classifier's
    # weight and bias decay; BN parameters do not.
    assert decay[id(model.head.fc.bias)] == 1e-5
    assert decay[id(model.head.fc.weight)] == 1e-5
    assert decay[id(model.backbone.stem[0].weight)] == 1e-5
    dw = model.backbone.blocks[0].branches['k5'].dw_conv.weight
    assert decay[id(dw)] == 1e-5
    # bias_decay_mult=0.0 keeps the earlier rule: no bias decays.
    cfg = dict(type='atomnas_mm.AtomNASOptimWrapper',
               optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-5))
    wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type='atomnas_mm.AtomNASOptimWrapperConstructor',
             optim_wrapper_cfg=cfg,
             paramwise_cfg=dict(bias_decay_mult=0.0)))(model)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert decay[id(model.head.fc.bias)] == 0


@pytest.mark.parametrize('bad', [dict(weight=-1e-4), dict(ramp_epochs=-1),
                                 dict(lamda=1e-4)])
def test_bad_penalty_config(tiny_spec, bad):
    with pytest.raises(ValueError, match='penalty'):
        AtomNASOptimWrapper(torch.optim.SGD([torch.nn.Parameter(
            torch.ones(1))], lr=0.1), penalty=bad)


def test_model_without_atomnas_backbone():
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='MobileNetV2', widen_factor=0.25),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=1280)))
    with pytest.raises(ValueError, match='no AtomNASNet backbone'):
        _wrapper(model, weight=1e-4)


def test_wrapper_without_constructor_refuses_the_first_step(tiny_spec):
    """Built by mmengine's default constructor, the wrapper never sees the
    model: it must not train on without the penalty."""
    from mmengine.optim import build_optim_wrapper
    model = _classifier(tiny_spec)
    wrapper = build_optim_wrapper(model, dict(
        type='atomnas_mm.AtomNASOptimWrapper',
        optimizer=dict(type='SGD', lr=0.1),
        penalty=dict(weight=1e-4, input_size=32)))
    loss = sum(p.sum() for p in model.parameters()) * 0
    with pytest.raises(RuntimeError, match="constructor='atomnas_mm."
                       "AtomNASOptimWrapperConstructor'"):
        wrapper.update_params(loss)


def test_wrapper_without_shrink_hook_refuses_the_first_step(tiny_spec):
    """With the constructor but no DynamicShrinkHook, nothing owns lambda
    and the costs: the first step says which hook to add."""
    model = _classifier(tiny_spec)
    wrapper = _build(model, dict(type='atomnas_mm.AtomNASOptimWrapper',
                                 optimizer=dict(type='SGD', lr=0.1),
                                 penalty=dict(weight=1e-4, input_size=32)))
    loss = sum(p.sum() for p in model.parameters()) * 0
    with pytest.raises(RuntimeError, match='atomnas_mm.DynamicShrinkHook'):
        wrapper.update_params(loss)


def test_amp_wrapper_adds_the_penalty_before_loss_scaling(tiny_spec,
                                                          monkeypatch):
    """As far as a CPU allows: mmengine's AmpOptimWrapper asserts a GPU, so
    the check is bypassed and its CUDA GradScaler replaced by torch's CPU
    one (real loss scaling). One step must move every parameter exactly as
    the plain wrapper does: the penalty is added before the scaling, and
    the scaling is undone before the step."""
    import functools

    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp, 'GradScaler',
                        functools.partial(torch.amp.GradScaler, 'cpu'))
    results = []
    for kind in ('AtomNASOptimWrapper', 'AtomNASAmpOptimWrapper'):
        torch.manual_seed(0)
        model = _classifier(tiny_spec)
        cfg = dict(type=f'atomnas_mm.{kind}',
                   optimizer=dict(type='SGD', lr=0.1),
                   penalty=dict(weight=0.01, input_size=32))
        if 'Amp' in kind:
            cfg['loss_scale'] = 1024.0
        wrapper = _bind(_build(model, cfg), model)
        _set_progress(wrapper, 100)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        loss = model(x, mode='tensor').pow(2).mean()
        before = [p.detach().clone() for p in model.parameters()]
        wrapper.update_params(loss)
        results.append([p.detach() - b for p, b in zip(model.parameters(),
                                                       before)])
        if 'Amp' in kind:
            assert wrapper.loss_scaler.get_scale() == 1024.0
    for plain, amp_step in zip(*results):
        assert torch.allclose(plain, amp_step, atol=1e-6, rtol=1e-4)


def test_lambda_is_held_per_step_and_zero_once_the_target_is_reached(
        tiny_spec):
    """Under accumulation k, lambda is computed per optimizer step and held
    for the step's micro-batches (k micro-batches see what one GPU of k
    would); with a target it is 0 for good once the target is reached."""
    model = _classifier(tiny_spec)
    cm = _wrapper(model, weight=0.01).search.cost_model
    spec = load_spec(tiny_spec)
    target = (cm.total(spec) + cm.fixed(spec)) / 2
    cfg = dict(type='atomnas_mm.AtomNASOptimWrapper', accumulative_counts=4,
               optimizer=dict(type='SGD', lr=0.1),
               penalty=dict(weight=0.01, input_size=32, ramp_iters=8,
                            target=dict(macs=target), target_by=0.5))
    wrapper = _bind(_build(model, cfg), model)
    state = wrapper.search
    lams = []
    for it in range(16):
        _set_progress(wrapper, it, max_iters=40, max_epochs=1, k=4)
        lams.append(state.lam())
    # Ramp of 8 iterations = 2 optimizer steps: 0, 0.005, then 0.01.
    assert lams == [0.0] * 4 + [0.005] * 4 + [0.01] * 8
    state.budget.record(step=4, cost=target, removed=1.0)
    assert state.budget.done and state.lam() == 0.0
