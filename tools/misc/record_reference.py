"""Record the authors' search on a small supernet, as a fixture that our
search must replay step for step.

    python tools/misc/record_reference.py --authors-code PATH [--out FILE]

PATH is a clone of the authors' code (github meijieru/AtomNAS; nothing of
it is part of this project). The tool imports it and runs THEIR training
step (``train.run_one_epoch``), optimizer, EMA, lr and penalty schedules
and their ``train.shrink_model`` on the CPU, in float64, on a small
supernet at 32x32 for a few epochs; their epoch-end decision (threshold on
the EMA model's gammas, the delta gate, the last epoch's removal by
alpha_hat alone) is restated here in a few lines, because it sits inline
in their ``train_val_test``. It records:

* ``spec``: the supernet in our format; ``init``: its initial weights in
  our layout (drawn by our default init, then written into theirs);
  ``images`` / ``labels``: the batches (the same every epoch, in order);
* ``recipe``: every setting, in their names and in the units ours take;
* ``steps``: per optimizer step the lr, the task loss (label-smoothed CE),
  the L1 penalty term and the L2 term;
* ``gammas``: every depthwise-BN gamma at a few steps (before the step);
* ``checks``: per epoch end, the atoms removed (indices in the supernet),
  the spec after, and the optimizer state (square average and momentum
  buffer) of every surviving gamma.

What their code needs and this machine may lack is provided without
running anything of theirs differently: CUDA tensors stay on the CPU
(``Tensor.cuda`` returns the tensor), and modules only imported for data
sets or logging (lmdb, pyarrow, tensorboard) are empty stand-ins when
missing; their logging calls go to a recorder. Dropout is 0 in the
recorded run (random masks cannot be matched across implementations).
``tests/test_engine/test_reference.py`` replays the fixture with our
Runner, hooks and optimizer wrapper.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch

from atomnas_mm.models import AtomNASNet, load_spec

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OUT = osp.join(ROOT, 'tests', 'data', 'authors_reference.pt')
FORMAT = 'atomnas_mm.authors_reference'

# The recorded search. Their settings on the left of each comment; ours
# are derived from them in the replay.
STEM, FIRST, CLASSES, SIDE, HEAD = 8, 8, 10, 32, 64
#: [t, out, n, stride, kernels]: their supernet builder's rows.
SETTING = [[1, FIRST, 1, 1, [3]],
           [3, 16, 2, 2, [3, 5, 7]],
           [3, 24, 2, 2, [3, 5, 7]],
           [3, 32, 2, 2, [3, 5, 7]],
           [3, 40, 1, 2, [3, 5, 7]]]
RECIPE = dict(
    batch=8, steps_per_epoch=10, epochs=6, seed=0,
    base_lr=0.002, base_total_batch=4,  # lr 0.004, warm-up from 0.002
    epoch_warmup=2, exp_decaying_lr_gamma=0.9, exp_decay_epoch_interval=1.2,
    momentum=0.9, alpha=0.9, epsilon=1e-3, weight_decay=1e-4,
    label_smoothing=0.1, moving_average_decay=0.999,
    moving_average_decay_base_batch=32,  # decay 0.999 ** (8 / 32)
    rho=5e-2, rho_warmup_epochs=1,
    model_shrink_threshold=5e-2, model_shrink_delta_flops=2e3,
    batch_norm_momentum=0.01, batch_norm_epsilon=1e-3, dropout_ratio=0.0,
    gamma_steps=(0, 10, 25, 40, 59))


# ------------------------------------------------------------ our side
def our_spec() -> dict:
    """The supernet of ``SETTING`` in our spec format."""
    blocks, cin = [], FIRST
    for t, c, n, s, ks in SETTING[1:]:
        for i in range(n):
            blocks.append(dict(in_channels=cin, out_channels=c,
                               stride=s if i == 0 else 1,
                               kernels={str(k): t * cin for k in ks}))
            cin = c
    return dict(stem_channels=STEM, first_block=dict(out_channels=FIRST,
                                                     kernel_size=3),
                blocks=blocks, head_channels=HEAD, activation='relu',
                se_ratio=0.0)


def initial_weights(spec: dict, seed: int) -> dict:
    """Our default init of backbone and classifier (float32 values, exact
    in float64), in our layout: ``backbone.*`` and ``head.fc.*``."""
    torch.manual_seed(seed)
    net = AtomNASNet(spec)
    net.init_weights()
    fc = torch.nn.Linear(HEAD, CLASSES)
    torch.nn.init.normal_(fc.weight, 0, 0.01)
    torch.nn.init.zeros_(fc.bias)
    state = {f'backbone.{k}': v.contiguous() for k, v in
             net.state_dict().items()}
    state.update({f'head.fc.{k}': v for k, v in fc.state_dict().items()})
    return state


def batches(seed: int, steps: int, batch: int):
    """uint8 images with a class pattern under noise (learnable, so some
    atoms matter and others do not), and labels."""
    rng = np.random.default_rng(seed)
    n = steps * batch
    labels = rng.integers(0, CLASSES, n)
    patterns = rng.integers(0, 256, (CLASSES, 3, SIDE, SIDE))
    noise = rng.integers(0, 256, (n, 3, SIDE, SIDE))
    images = ((patterns[labels] * 0.6 + noise * 0.4)).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float64 inputs, the same on both sides."""
    return (images.double() / 255.0 - 0.5) * 4.0


def to_theirs(ours: dict) -> dict:
    """Our layout -> the authors' supernet's state dict keys (their
    ``features`` / ``classifier``; non-fused blocks: per-kernel expand,
    depthwise and project convs, one BN after the sum)."""
    spec = load_spec(our_spec())
    out = {}

    def bn(dst, src):
        for name in ('weight', 'bias', 'running_mean', 'running_var',
                     'num_batches_tracked'):
            out[f'{dst}.{name}'] = ours[f'{src}.{name}']

    out['features.0.0.weight'] = ours['backbone.stem.0.weight']
    bn('features.0.1', 'backbone.stem.1')
    f = 'features.1'
    out[f'{f}.ops.0.0.0.weight'] = ours['backbone.first.dw_conv.weight']
    bn(f'{f}.ops.0.0.1', 'backbone.first.dw_bn')
    out[f'{f}.ops.0.1.weight'] = ours['backbone.first.project_conv.weight']
    bn(f'{f}.pw_bn', 'backbone.first.project_bn')
    for j, block in enumerate(spec.blocks):
        f, b = f'features.{j + 2}', f'backbone.blocks.{j}'
        for i, k in enumerate(block.kernels):
            br = f'{b}.branches.k{k}'
            out[f'{f}.ops.{i}.0.0.weight'] = ours[f'{br}.expand_conv.weight']
            bn(f'{f}.ops.{i}.0.1', f'{br}.expand_bn')
            out[f'{f}.ops.{i}.1.0.weight'] = ours[f'{br}.dw_conv.weight']
            bn(f'{f}.ops.{i}.1.1', f'{br}.dw_bn')
            out[f'{f}.ops.{i}.2.weight'] = ours[f'{br}.project_conv.weight']
        bn(f'{f}.pw_bn', f'{b}.project_bn')
    f = f'features.{len(spec.blocks) + 2}'
    out[f'{f}.0.weight'] = ours['backbone.head.0.weight']
    bn(f'{f}.1', 'backbone.head.1')
    out['classifier.1.weight'] = ours['head.fc.weight']
    out['classifier.1.bias'] = ours['head.fc.bias']
    return {k: v.double() if v.is_floating_point() else v
            for k, v in out.items()}


# ------------------------------------------------------------ their side
class Recorder:
    """Stands in for their TensorBoard writer: keeps the scalars and the
    histograms they log."""

    def __init__(self) -> None:
        self.scalars = {}
        self.histograms = {}

    def add_scalar(self, tag, value, step):
        self.scalars.setdefault(step, {})[tag] = float(value)

    def add_histogram(self, tag, values, step):
        self.histograms.setdefault(step, {})[tag] = values.detach().clone()


def _stand_ins() -> None:
    for name in ('lmdb', 'pyarrow'):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        tb = types.ModuleType('torch.utils.tensorboard')
        tb.SummaryWriter = Recorder
        sys.modules['torch.utils.tensorboard'] = tb


def _flags_file(folder: str) -> str:
    r = RECIPE
    text = f"""
model: models.mobilenet_supernet
model_kwparams: {{
  num_classes: {CLASSES}, input_channel: {STEM}, last_channel: {HEAD},
  width_mult: 1.0, round_nearest: 8, active_fn: nn.ReLU,
  dropout_ratio: {r['dropout_ratio']},
  batch_norm_momentum: {r['batch_norm_momentum']},
  batch_norm_epsilon: {r['batch_norm_epsilon']},
  inverted_residual_setting: {SETTING}}}
image_size: {SIDE}
topk: [1]
num_epochs: {r['epochs']}
optimizer: rmsprop
momentum: {r['momentum']}
alpha: {r['alpha']}
epsilon: {r['epsilon']}
eps_inside_sqrt: True
weight_decay: {r['weight_decay']}
weight_decay_method: mnas
base_lr: {r['base_lr']}
base_total_batch: {r['base_total_batch']}
per_gpu_batch_size: {r['batch']}
lr_scheduler: exp_decaying
lr_stepwise: False
epoch_warmup: {r['epoch_warmup']}
exp_decaying_lr_gamma: {r['exp_decaying_lr_gamma']}
exp_decay_epoch_interval: {r['exp_decay_epoch_interval']}
label_smoothing: {r['label_smoothing']}
moving_average_decay: {r['moving_average_decay']}
moving_average_decay_adjust: True
moving_average_decay_base_batch: {r['moving_average_decay_base_batch']}
prune_params: {{method: network_slimming,
  bn_prune_filter: expansion_only_skip_expand1, rho: {r['rho']},
  epoch_free: 0, epoch_warmup: {r['rho_warmup_epochs']}, scheduler: linear,
  stepwise: True, logging_verbose: False}}
model_shrink_threshold: {r['model_shrink_threshold']}
model_shrink_delta_flops: {r['model_shrink_delta_flops']}
use_distributed: False
allreduce_bn: False
data_loader_workers: 0
log_interval: 1
log_interval_detail: 1
profiling: [cpu]
bn_calibration: False
"""
    path = osp.join(folder, 'record.yml')
    with open(path, 'w') as f:
        f.write(text)
    return path


def _our_key_order(spec) -> list:
    return [(j, k) for j, b in enumerate(spec.blocks) for k in b.kernels]


def record(authors: str) -> dict:
    """Run their search and return the fixture (see the module
    docstring)."""
    r = RECIPE
    spec_dict = our_spec()
    spec = load_spec(spec_dict)
    init = initial_weights(spec_dict, r['seed'])
    images, labels = batches(r['seed'], r['steps_per_epoch'], r['batch'])
    with tempfile.TemporaryDirectory() as tmp:
        argv, path = sys.argv, list(sys.path)
        sys.argv = ['record_reference', 'app:' + _flags_file(tmp)]
        sys.path.insert(0, osp.abspath(authors))
        _stand_ins()
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self  # stay on the CPU
        try:
            return _run(spec, spec_dict, init, images, labels)
        finally:
            torch.set_default_dtype(torch.float32)
            torch.Tensor.cuda = cuda
            sys.argv, sys.path[:] = argv, path


def _run(spec, spec_dict, init, images, labels) -> dict:
    import common as mc
    import models.mobilenet_base as mb
    import train
    from utils import optim, prune
    from utils.config import FLAGS
    from utils.model_profiling import model_profiling
    import functools
    r = RECIPE
    # New modules (their shrink rebuilds blocks) must be float64 too.
    torch.set_default_dtype(torch.float64)
    mc.model_profiling = functools.partial(model_profiling, use_cuda=False)
    FLAGS.batch_size = FLAGS._loader_batch_size = r['batch']
    FLAGS.lr = FLAGS.base_lr * FLAGS.batch_size / FLAGS.base_total_batch
    FLAGS._steps_per_epoch = r['steps_per_epoch']
    FLAGS._global_step = 0

    model = __import__(FLAGS.model, fromlist=['Model']).Model(
        **FLAGS.model_kwparams, input_size=FLAGS.image_size).double()
    model.load_state_dict(to_theirs(init))
    wrapper = torch.nn.DataParallel(model)  # no GPU: calls the module
    model_profiling(model, SIDE, SIDE, use_cuda=False, num_forwards=0,
                    verbose=False)  # their penalty reads m.n_macs
    ema = mc.setup_ema(model)
    criterion = optim.CrossEntropyLabelSmooth(
        CLASSES, FLAGS.label_smoothing, reduction='none')
    optimizer = optim.get_optimizer(wrapper, FLAGS)
    lr_scheduler = optim.get_lr_scheduler(optimizer, FLAGS)
    FLAGS._bn_to_prune = prune.get_bn_to_prune(model, FLAGS.prune_params,
                                               verbose=False)
    rho_scheduler = prune.get_rho_scheduler(FLAGS.prune_params,
                                            FLAGS._steps_per_epoch)
    mc.summary_writer = writer = Recorder()

    # Original indices of every atom still alive, per (block, kernel).
    alive = {key: list(range(spec.blocks[key[0]].kernels[key[1]]))
             for key in _our_key_order(spec)}
    removed_now = {}
    compress = mb.InvertedResidualChannels.compress_by_mask
    blocks = list(model.get_named_block_list().values())

    def recording_compress(block, masks, **kwargs):
        j = blocks.index(block) - 1  # features.1 is the fixed first block
        for k, mask in zip(block.kernel_sizes if j >= 0 else (), masks):
            key = (j, k)
            keep = mask.nonzero().flatten().tolist()
            gone = [alive[key][i] for i in range(len(alive[key]))
                    if i not in keep]
            if gone:
                removed_now[key] = sorted(gone)
            alive[key] = [alive[key][i] for i in keep]
            if not alive[key]:
                del alive[key]
        return compress(block, masks, **kwargs)

    mb.InvertedResidualChannels.compress_by_mask = recording_compress
    data = normalise(images)
    loader = [(data[s * r['batch']:(s + 1) * r['batch']],
               labels[s * r['batch']:(s + 1) * r['batch']])
              for s in range(r['steps_per_epoch'])]
    meters = mc.get_meters('train')
    checks = []
    with contextlib.redirect_stdout(sys.stderr):
        for epoch in range(r['epochs']):
            train.run_one_epoch(epoch, loader, wrapper, criterion, optimizer,
                                lr_scheduler, ema, rho_scheduler, meters,
                                phase='train')
            # Their epoch end (train_val_test): gate on the EMA model's
            # gammas, shrink by both (by alpha_hat alone at the last epoch).
            eval_wrapper = mc.get_ema_model(ema, wrapper)
            thr = FLAGS.model_shrink_threshold
            masks = prune.cal_mask_network_slimming_by_threshold(
                train.get_prune_weights(eval_wrapper), thr)
            FLAGS._bn_to_prune.add_info_list('mask', masks)
            pruned, _ = prune.cal_pruned_flops(FLAGS._bn_to_prune)
            last = epoch == FLAGS.num_epochs - 1
            removed_now.clear()
            if pruned >= FLAGS.model_shrink_delta_flops or last:
                train.shrink_model(wrapper, ema, optimizer,
                                   FLAGS._bn_to_prune, thr, ema_only=last)
            state = {}
            for j, block in enumerate(blocks[1:]):
                for k, bn in zip(block.kernel_sizes,
                                 block.get_depthwise_bn()):
                    st = optimizer.state[bn.weight]
                    state[f'{j}.{k}'] = torch.stack([
                        st['square_avg'], st['momentum_buffer']])
            checks.append(dict(
                epoch=epoch, gated_macs=float(pruned),
                removed={f'{j}.{k}': v for (j, k), v in
                         sorted(removed_now.items())},
                alive={f'{j}.{k}': v for (j, k), v in sorted(alive.items())},
                optimizer=state))
            print(f'[record] epoch {epoch + 1}: atoms dead by alpha_hat cost '
                  f'{pruned:.0f} MACs, removed '
                  f'{sum(len(v) for v in removed_now.values())}',
                  file=sys.stderr)
    mb.InvertedResidualChannels.compress_by_mask = compress

    steps = []
    for s in range(r['epochs'] * r['steps_per_epoch']):
        got = writer.scalars[s]
        steps.append(dict(lr=got['train/learning_rate'],
                          loss=got['train/loss'],
                          l1=got['train/bn_l1_loss'],
                          l2=got['train/l2_regularize_loss'],
                          rho=got['prune/rho']))
    names = list(FLAGS._bn_to_prune.weight)
    gammas = {}
    for s in r['gamma_steps']:
        hist = writer.histograms[s]
        gammas[s] = _gammas_by_key(hist, spec, s, checks)
    return dict(format=FORMAT, version=1, spec=spec_dict, recipe=dict(r),
                init={k: v for k, v in init.items()}, images=images,
                labels=labels, steps=steps, gammas=gammas, checks=checks,
                torch=torch.__version__, bn_names=names)


def _gammas_by_key(hist: dict, spec, step: int, checks: list) -> dict:
    """Their per-BN histograms ('train/bn_scale/features.J.ops.I.1.1.weight')
    -> our keys 'j.k' (kernels alive at that step, in order)."""
    epoch = step // RECIPE['steps_per_epoch']
    alive = checks[epoch - 1]['alive'] if epoch else {
        f'{j}.{k}': None for j, b in enumerate(spec.blocks)
        for k in b.kernels}
    per_block = {}
    for key in alive:
        j, k = (int(x) for x in key.split('.'))
        per_block.setdefault(j, []).append(k)
    out = {}
    for tag, values in hist.items():
        parts = tag.split('/')[-1].split('.')
        if parts[0] != 'features' or len(parts) < 4:
            continue
        j, i = int(parts[1]) - 2, int(parts[3])
        out[f'{j}.{sorted(per_block[j])[i]}'] = values
    return out


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--authors-code', required=True,
                        help='a clone of github meijieru/AtomNAS')
    parser.add_argument('--out', default=OUT, help=f'default: {OUT}')
    args = parser.parse_args(argv)
    path = osp.abspath(args.authors_code)
    if not osp.isfile(osp.join(path, 'train.py')) or not osp.isdir(
            osp.join(path, 'utils')):
        sys.exit(f'error: {args.authors_code}: not a clone of the authors\' '
                 'code (no train.py and utils/); fetch github meijieru/'
                 'AtomNAS and pass its folder')
    fixture = record(path)
    try:
        fixture['authors_commit'] = subprocess.run(
            ['git', '-C', path, 'rev-parse', 'HEAD'], capture_output=True,
            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        fixture['authors_commit'] = None
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    tmp = args.out + '.tmp'
    torch.save(fixture, tmp)
    os.replace(tmp, args.out)
    removed = [sum(len(v) for v in c['removed'].values())
               for c in fixture['checks']]
    print(f'recorded {len(fixture["steps"])} steps, atoms removed per epoch '
          f'{removed}: {args.out} ({osp.getsize(args.out) / 1e3:.0f} kB)')
    return args.out


if __name__ == '__main__':
    main()
