"""One test (at least) per seam of atomnas_mm.utils.seams: each fails when
the framework internal it relies on changes."""
import builtins
import copy
import os
import os.path as osp
import warnings

import pytest
import torch
from mmengine.runner import Runner, load_checkpoint

from atomnas_mm.models.checkpoint import CheckpointError, load_checkpoint_file
from atomnas_mm.utils import mmengine_checkpoint_globals, seams
from tests.conftest import demo_cfg, search_cfg


# ------------------------------------------------------------ versions
def test_seams_warn_once_on_an_untested_version(monkeypatch):
    monkeypatch.setitem(seams.TESTED, 'mmengine', '0.0.1')

    @seams._seam('mmengine')
    def probe():
        return 1

    with pytest.warns(UserWarning, match=r'probe relies on internals of '
                      r'mmengine 0\.0\.1; found 0\.10\.7'):
        assert probe() == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert probe() == 1  # only once


def test_installed_versions_are_the_tested_ones():
    for package, version in seams.TESTED.items():
        assert seams.installed_version(package) == version


# ------------------------------------------------------------ init bookkeeping
def test_mark_initialized_stops_a_second_init(tiny_spec):
    from atomnas_mm.models import AtomNASNet
    net = AtomNASNet(tiny_spec)
    assert not net.is_init
    seams.mark_initialized(net)
    assert net.is_init


def test_adopt_new_params_satisfies_mmengine_bookkeeping(tiny_spec):
    from mmengine.model.weight_init import update_init_info

    from atomnas_mm.models import AtomNASNet
    net = AtomNASNet(tiny_spec)
    from collections import defaultdict
    net._params_init_info = defaultdict(dict)
    for p in net.parameters():
        net._params_init_info[p]['init_info'] = ''
        net._params_init_info[p]['tmp_mean_value'] = p.data.mean()
    net.keep_atoms({1: {3: [0, 1]}})  # new parameter objects
    with pytest.raises(AssertionError, match='new :obj:`Parameter`'):
        update_init_info(net, 'x')
    seams.adopt_new_params(net)
    update_init_info(net, 'x')


# ------------------------------------------------------------ runner, EMA
def test_is_resuming_reads_the_runner(tmp_path, digits_root, tiny_spec):
    cfg = demo_cfg(tmp_path, digits_root, tiny_spec, subset=16,
                   experiment_name='load')
    assert not seams.is_resuming(Runner.from_cfg(copy.deepcopy(cfg)))
    cfg.merge_from_dict(dict(resume=True, experiment_name='resume'))
    assert seams.is_resuming(Runner.from_cfg(cfg))


def test_refresh_averaged_model_follows_new_parameters(tiny_spec):
    from mmengine.model import ExponentialMovingAverage

    from atomnas_mm.models import AtomNASNet
    net = AtomNASNet(tiny_spec)
    ema = ExponentialMovingAverage(net, momentum=0.5)
    for model in (net, ema.module):
        model.keep_atoms({1: {3: [0, 2]}})
    with pytest.raises(RuntimeError):  # the table still holds old tensors
        ema.update_parameters(net)
    seams.refresh_averaged_model(ema)
    ema.update_parameters(net)
    w = ema.module.blocks[1].branches['k3'].dw_conv.weight
    assert w.shape[0] == 2


# ------------------------------------------------------------ config bases
def test_config_package_resolves_our_bases(tmp_path):
    from mmengine.config import Config, utils
    assert utils.MODULE2PACKAGE['atomnas_mm'] == 'atomnas_mm'
    user = tmp_path / 'cfg.py'
    user.write_text("_base_ = 'atomnas_mm::atomnas/atomnas_demo_digits.py'\n")
    assert Config.fromfile(str(user)).model.backbone.type == \
        'atomnas_mm.AtomNASNet'


# ------------------------------------------------------------ safe loading
@pytest.fixture
def safe_loading():
    """What our tools and hooks switch on before a runner loads."""
    seams.use_safe_checkpoint_loading()


def test_importing_the_package_changes_nothing_for_others():
    """A config with custom_imports=['atomnas_mm'] and none of our tools or
    hooks: mmengine's loader, torch's allow-list and how message-hub
    buffers pickle are those of a process without us."""
    import subprocess
    import sys
    code = (
        'import torch\n'
        'from mmengine.runner.checkpoint import CheckpointLoader\n'
        'from mmengine.logging.history_buffer import HistoryBuffer\n'
        'before = (CheckpointLoader._schemes[""], '
        'HistoryBuffer.__dict__.get("__reduce__"))\n'
        'import atomnas_mm\n'
        'after = (CheckpointLoader._schemes[""], '
        'HistoryBuffer.__dict__.get("__reduce__"))\n'
        'assert before == after, (before, after)\n'
        'assert HistoryBuffer not in '
        'torch.serialization.get_safe_globals()\n'
        'from atomnas_mm.utils import seams\n'
        'with seams.plain_history_buffers():\n'
        '    assert "__reduce__" in HistoryBuffer.__dict__\n'
        'assert HistoryBuffer.__dict__.get("__reduce__") is None\n'
        'seams.use_safe_checkpoint_loading()\n'
        'assert CheckpointLoader._schemes[""]._atomnas\n'
        'print("ok")\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True)
    assert proc.stdout.strip() == 'ok', proc.stderr[-2000:]


def test_private_framework_names_are_touched_in_seams_only():
    """The README's promise, checked on the source: outside seams.py no
    module reads or writes a private attribute of another object, imports a
    private name of torch or mmengine, or overrides a private method of a
    framework class. The one exception, written down there: mmengine's
    parameter schedulers are extended through ``_get_value``, the method
    their docs ask subclasses to implement."""
    import ast
    import glob
    import importlib
    import inspect
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    # _abc_impl: set on every class by Python's ABCMeta, not written here.
    allowed_overrides = {'_get_value', '_abc_impl'}
    found = []
    for path in glob.glob(osp.join(root, 'atomnas_mm', '**', '*.py'),
                          recursive=True):
        if path.endswith('seams.py'):
            continue
        tree = ast.parse(open(path).read())
        ours = {n.name for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and \
                    node.attr.startswith('_') and \
                    not node.attr.startswith('__') and not (
                        isinstance(node.value, ast.Name) and
                        node.value.id in ('self', 'cls')) and \
                    node.attr not in ours:
                found.append(f'{path}:{node.lineno} .{node.attr}')
            if isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.split('.')[0] in ('torch', 'mmengine',
                                                  'mmcv', 'mmpretrain'):
                found += [f'{path}:{node.lineno} import {a.name}'
                          for a in node.names if a.name.startswith('_')]
        # Overrides: a private method of a class defined here that a base
        # class from outside the package defines too.
        name = osp.relpath(path, root)[:-3].replace(os.sep, '.')
        module = importlib.import_module(name.replace('.__init__', ''))
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for attr in vars(cls):
                if not attr.startswith('_') or attr.startswith('__') or \
                        attr in allowed_overrides:
                    continue
                if any(attr in vars(base) for base in cls.__mro__[1:]
                       if not base.__module__.startswith('atomnas_mm')):
                    found.append(f'{path}: {cls.__name__} overrides {attr}')
    assert not found, found


def test_runner_checkpoint_with_ema_needs_no_getattr(tmp_path, digits_root,
                                                     tiny_spec):
    cfg = demo_cfg(tmp_path, digits_root, tiny_spec, max_epochs=1, subset=64,
                   custom_hooks=[dict(type='EMAHook', momentum=0.1)])
    cfg.optim_wrapper.penalty.weight = 0.0  # no search: only checkpoints
    Runner.from_cfg(cfg).train()
    ckpt = osp.join(tmp_path, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    # It holds globals that torch does not allow by default (message hub,
    # numpy), and every one of them is among those we allow: getattr is not.
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(
            torch.serialization.get_unsafe_globals_in_checkpoint(ckpt))
    finally:
        torch.serialization.add_safe_globals(saved)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert 'builtins.getattr' not in needed
    allowed = {f'{g.__module__}.{g.__qualname__}'
               for g in mmengine_checkpoint_globals()}
    assert needed <= allowed, needed - allowed
    assert builtins.getattr not in torch.serialization.get_safe_globals()
    # The message hub comes back with its history and statistics.
    hub = load_checkpoint_file(ckpt)['message_hub']
    buf = hub['log_scalars']['train/loss']
    assert len(buf.data[0]) == 1 and buf.mean() == buf.current()
    cfg = demo_cfg(tmp_path, digits_root, tiny_spec, max_epochs=2, subset=64,
                   custom_hooks=[dict(type='EMAHook', momentum=0.1)],
                   resume=True, load_from=ckpt)
    cfg.optim_wrapper.penalty.weight = 0.0
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.epoch == 2
    assert runner.iter == 2 * 1  # 64 images, batch 64: one iter per epoch


class _BuiltinsModule:
    """Reaches the builtins module from getattr alone."""

    def __reduce__(self):
        return (getattr, (getattr, '__self__'))


class _Gadget:
    """Writes into the builtins module's namespace while unpickling, with
    nothing but ``builtins.getattr`` and dict items."""

    def __reduce__(self):
        return (getattr, (_BuiltinsModule(), '__dict__'), None, None,
                iter([('atomnas_pwned', True)]))


def test_getattr_gadget_is_refused(tmp_path, safe_loading):
    path = str(tmp_path / 'gadget.pth')
    torch.save({'state_dict': {}, 'meta': _Gadget()}, path)
    try:
        with pytest.raises(CheckpointError, match='getattr.*trust_checkpoint'):
            load_checkpoint_file(path)
        assert not hasattr(builtins, 'atomnas_pwned')
        # The same file through mmengine's own loading (resume, load_from).
        with pytest.raises(CheckpointError, match='gadget.pth'):
            load_checkpoint(torch.nn.Linear(1, 1), path)
        assert not hasattr(builtins, 'atomnas_pwned')
        # The attack is real: with getattr allowed (as before), it works.
        with torch.serialization.safe_globals([getattr]):
            load_checkpoint_file(path)
        assert builtins.atomnas_pwned is True
    finally:
        if hasattr(builtins, 'atomnas_pwned'):
            del builtins.atomnas_pwned


class _Evil:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_pickle_that_runs_code_is_refused(tmp_path, safe_loading):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match='os.system|system'):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))
    assert not marker.exists()


def test_old_style_history_buffer_needs_trust(tmp_path):
    """A checkpoint that pickled message-hub buffers the old way (through
    getattr) is refused in one line; the trust tool re-saves it safely."""
    import copyreg
    import sys

    from mmengine.logging.history_buffer import HistoryBuffer
    buf = HistoryBuffer([1.0, 2.0], [1, 1])
    path = str(tmp_path / 'old.pth')
    patched = HistoryBuffer.__reduce__
    HistoryBuffer.__reduce__ = lambda self: (copyreg.__newobj__, (
        HistoryBuffer, ), self.__getstate__())  # mmengine's own pickling
    try:
        torch.save({'state_dict': {}, 'message_hub': {'b': buf}}, path)
    finally:
        HistoryBuffer.__reduce__ = patched
    with pytest.raises(CheckpointError, match='getattr'):
        load_checkpoint_file(path)
    sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.dirname(
        osp.abspath(__file__)))), 'tools', 'misc'))
    import trust_checkpoint
    out = trust_checkpoint.main([path])
    loaded = load_checkpoint_file(out)['message_hub']['b']
    assert list(loaded.data[0]) == [1.0, 2.0] and loaded.mean() == 1.5


@pytest.mark.parametrize('make, match', [
    (lambda p: open(p, 'wb').close(), 'empty'),
    (lambda p: torch.save(torch.zeros(3), p), 'not a checkpoint but a Tensor'),
    (lambda p: open(p, 'wb').write(b'not a checkpoint at all'),
     'cannot be read as a checkpoint'),
])
def test_checkpoint_loader_seam_gives_one_line(tmp_path, make, match,
                                               safe_loading):
    path = str(tmp_path / 'bad.pth')
    make(path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(torch.nn.Linear(1, 1), path)
    assert '\n' not in str(info.value) and path in str(info.value)


def test_truncated_checkpoint_is_named(tmp_path):
    path = str(tmp_path / 'cut.pth')
    torch.save({'state_dict': {'w': torch.randn(1000)}}, path)
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match='cut.pth: the file is '
                       'truncated'):
        load_checkpoint_file(path)


# ------------------------------------------------------------ launcher
def test_setup_launcher_without_cuda(monkeypatch):
    from mmengine.config import Config
    cfg = Config(dict(launcher='none'))
    seams.setup_launcher(cfg)
    assert 'model_wrapper_cfg' not in cfg  # nothing to do
    cfg = Config(dict(launcher='slurm'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(RuntimeError, match='--launcher pytorch'):
        seams.setup_launcher(cfg)
    # The gloo path itself runs in tests/test_engine/test_ddp.py.


# ------------------------------------------------------------ checkpoint hook
def test_checkpoint_hook_keeps_an_intact_checkpoint(tmp_path, digits_root,
                                                    tiny_spec, monkeypatch):
    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=2,
                     subset=32)
    cfg.default_hooks.checkpoint.update(type='atomnas_mm.CheckpointHook',
                                        max_keep_ckpts=1)
    Runner.from_cfg(cfg).train()
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith('.pth')) == \
        ['deploy.pth', 'epoch_2.pth']
    assert open(tmp_path / 'last_checkpoint').read().endswith('epoch_2.pth')
    # A kill while writing epoch 3: the write never finishes.
    from mmengine.fileio import LocalBackend
    real_put = LocalBackend.put

    def killed(self, obj, filepath):
        if 'epoch_3' in str(filepath):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise KeyboardInterrupt
        return real_put(self, obj, filepath)

    cfg = search_cfg(tmp_path, digits_root, tiny_spec, max_epochs=3,
                     subset=32, resume=True)
    cfg.default_hooks.checkpoint.update(type='atomnas_mm.CheckpointHook',
                                        max_keep_ckpts=1)
    runner = Runner.from_cfg(cfg)
    monkeypatch.setattr(LocalBackend, 'put', killed)
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    monkeypatch.setattr(LocalBackend, 'put', real_put)
    # The previous checkpoint is intact and still named as the latest.
    assert load_checkpoint_file(str(tmp_path / 'epoch_2.pth'))['meta'][
        'epoch'] == 2
    assert not (tmp_path / 'epoch_3.pth').exists()
    assert open(tmp_path / 'last_checkpoint').read().endswith('epoch_2.pth')


# ------------------------------------------------------------ accumulation
def test_accumulation_of_reads_the_wrapper():
    from mmengine.optim import OptimWrapper
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert seams.accumulation_of(OptimWrapper(opt)) == 1
    assert seams.accumulation_of(OptimWrapper(opt,
                                              accumulative_counts=3)) == 3


def test_teardown_launcher_ends_the_gloo_group(tmp_path):
    import torch.distributed as dist

    from atomnas_mm.utils.seams import teardown_launcher
    teardown_launcher()  # no group: nothing to do
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                            rank=0, world_size=1)
    assert dist.is_initialized()
    teardown_launcher()
    assert not dist.is_initialized()
