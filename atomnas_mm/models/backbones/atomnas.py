"""AtomNASNet: one backbone class for the supernet and every searched net."""
from __future__ import annotations

import math
import os.path as osp
from typing import List, Mapping, Optional, Sequence, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from ...registry import MODELS
from ..arch.spec import ArchSpec, SpecError, SpecLike, load_spec
from ..checkpoint import (CheckpointError, check_weights_match_spec,
                          checkpoint_spec_or_none, load_checkpoint_file,
                          spec_of_weights, state_dict_of)
from ...utils.seams import (BatchNormBase, adopt_new_params,
                             mark_initialized)
from ..deploy import (DEPLOY_DEFAULTS, FusedFirstBlock, check_layout,
                      fuse_blocks, fuse_conv_bn_act)
from ..layers import (AtomicBlock, FirstBlock, IdentityBlock, ParamSlice,
                      checkpointed, drop_params, make_act)
from ..resolve import backbone_spec, resolve_arch

MEMORY_FORMATS = {
    'channels_last': torch.channels_last,
    'contiguous': torch.contiguous_format,
}


@MODELS.register_module()
class AtomNASNet(BaseModule):
    """The AtomNAS backbone, built from an architecture spec.

    Stages (the indices of ``out_indices`` and ``frozen_stages``)::

        0        stem 3x3 s2 + fixed first block        stride 2
        1 .. S   the spec's stages of searchable blocks (a stage starts
                 where a block changes resolution or width)
        S + 1    1x1 conv to ``head_channels``           stride 32

    For the supernet and the published nets S = 6, so the indices are
    0..7 at strides 2, 4, 8, 16, 16, 32, 32, 32 with 16, 24, 40, 80, 96,
    192, 320, 1280 channels.

    Args:
        arch: The spec: a shipped name (``'supernet'``, ``'atomnas_c'``...),
            a JSON path, a dict, an :class:`ArchSpec`, or a search
            checkpoint (``.pth``, its ``meta['atomnas_spec']``). None takes
            the spec from the last ``Pretrained`` checkpoint of
            ``init_cfg`` (the one rule: :func:`~atomnas_mm.models.resolve.
            backbone_spec`).
        out_indices: Stages whose outputs are returned; negative indices
            count from the end. Default: the head only.
        frozen_stages: Stages ``0 .. frozen_stages`` are frozen (eval mode,
            no gradient); -1 freezes nothing.
        norm_cfg: Config of every norm layer (mmcv's ``build_norm_layer``).
        norm_eval: Keep every BN (incl. SyncBN and mmengine's converted BN)
            in eval mode while training.
        act: Override the spec's activation (``'relu'`` / ``'swish'``).
        se_ratio: Override the spec's SE ratio.
        memory_format: ``'channels_last'`` (default; depthwise convs run
            2-4x faster on CPU) or ``'contiguous'``.
        with_cp: Activation checkpointing (mmpretrain's name): the atoms'
            activations of every block (and the first block's) are
            recomputed in the backward instead of kept, trading compute for
            memory. BN statistics are updated once per forward, as without
            it.
        init_cfg: Initialisation config. Default: convs N(0, sqrt(2 /
            fan_out)) with depthwise fan_out = k * k, BN gamma 1, beta 0.
    """

    def __init__(self,
                 arch: Optional[SpecLike] = 'supernet',
                 out_indices: Sequence[int] = (-1, ),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN'),
                 norm_eval: bool = False,
                 act: Optional[str] = None,
                 se_ratio: Optional[float] = None,
                 memory_format: str = 'channels_last',
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        resolved = backbone_spec(arch, init_cfg)
        spec, source = resolved.spec, resolved.label
        if act is not None:
            make_act(act)  # validates the name
            spec.activation = act
        if se_ratio is not None:
            spec.se_ratio = float(se_ratio)
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(f'memory_format must be one of '
                             f'{sorted(MEMORY_FORMATS)}, got {memory_format!r}')
        self.memory_format = memory_format
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.head_channels = spec.head_channels
        self.activation = spec.activation
        self.se_ratio = spec.se_ratio

        self.stem = nn.Sequential(
            nn.Conv2d(3, spec.stem_channels, 3, 2, 1, bias=False),
            build_norm_layer(norm_cfg, spec.stem_channels)[1],
            make_act(spec.activation))
        self.first = FirstBlock(spec.stem_channels, spec.first_channels,
                                spec.first_kernel, spec.activation, norm_cfg,
                                spec.se_channels(spec.stem_channels))
        self.blocks = nn.ModuleList([
            IdentityBlock(b.in_channels) if b.is_identity else
            AtomicBlock(b, spec.activation, spec.se_channels(b.in_channels),
                        norm_cfg)
            for b in spec.blocks
        ])
        self.with_cp = with_cp
        # Stage boundaries follow from channels and strides, which never
        # change during the search, so they are fixed here.
        self.stage_ends = spec.stage_ends()
        self.stage_channels = spec.stage_channels()
        num_stages = len(self.stage_channels)
        self.out_indices = self._check_out_indices(out_indices, num_stages,
                                                   source)
        # The head conv exists only when an output needs it: a detector's
        # FPN does not, and unused parameters would break DDP.
        last = spec.blocks[-1].out_channels if spec.blocks \
            else spec.first_channels
        self.head = nn.Sequential(
            nn.Conv2d(last, spec.head_channels, 1, bias=False),
            build_norm_layer(norm_cfg, spec.head_channels)[1],
            make_act(spec.activation)) \
            if num_stages - 1 in self.out_indices else None
        if not -1 <= frozen_stages < num_stages:
            raise ValueError(f'frozen_stages: must be in -1..{num_stages - 1}, '
                             f'got {frozen_stages}')
        self.frozen_stages = frozen_stages
        # switch_to_deploy() sets these: the fused form, and the real spec
        # (the fused blocks hold padded atoms).
        self.deployed = False
        self._deployed_spec: Optional[ArchSpec] = None
        self.to(memory_format=MEMORY_FORMATS[memory_format])
        self._freeze_stages()
        self.register_load_state_dict_pre_hook(self._fit_to_weights)

    # ----------------------------------------------------------- building
    @staticmethod
    def _check_out_indices(out_indices: Sequence[int], num_stages: int,
                           source: str) -> List[int]:
        result = []
        for i in out_indices:
            j = i + num_stages if i < 0 else i
            if not 0 <= j < num_stages:
                raise ValueError(f'out_indices: {i} is out of range for the '
                                 f'net of {source}, which has {num_stages} '
                                 f'stages (0..{num_stages - 1})')
            result.append(j)
        return result

    @staticmethod
    def channels_of(arch: SpecLike, out_indices: Sequence[int] = (-1, )
                    ) -> List[int]:
        """Output channels for ``out_indices`` of a spec (name, path, dict)
        or search checkpoint, without building the net: e.g. an FPN's
        ``in_channels``."""
        resolved = resolve_arch(arch)
        channels = resolved.spec.stage_channels()
        return [channels[i] for i in AtomNASNet._check_out_indices(
            out_indices, len(channels), resolved.label)]

    # ----------------------------------------------------------- queries
    @property
    def out_channels(self) -> List[int]:
        """Channels of each output, in ``out_indices`` order (e.g. an FPN's
        ``in_channels``)."""
        return [self.stage_channels[i] for i in self.out_indices]

    @property
    def arch_spec(self) -> ArchSpec:
        """The net's current spec (it changes as the search removes
        atoms). A deployed (fused) net reports the net it was fused from:
        its real atoms, padding excluded."""
        if self.deployed:
            return load_spec(self._deployed_spec.to_dict())
        first = self.first
        return ArchSpec(
            stem_channels=first.dw_conv.in_channels,
            first_channels=first.project_conv.out_channels,
            blocks=[b.spec() for b in self.blocks],
            head_channels=self.head_channels,
            activation=self.activation,
            se_ratio=self.se_ratio,
            first_kernel=first.dw_conv.kernel_size[0])

    def stage_modules(self, stage: int) -> List[nn.Module]:
        if stage == 0:
            return [self.stem, self.first]
        if stage == len(self.stage_channels) - 1:
            return [self.head] if self.head is not None else []
        start = self.stage_ends[stage - 2] + 1 if stage > 1 else 0
        return list(self.blocks[start:self.stage_ends[stage - 1] + 1])

    # ----------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> tuple:
        """(N, 3, H, W) -> tuple of (N, C_i, H / s_i, W / s_i), one per
        ``out_indices`` entry, in ascending stage order, in the default
        (contiguous) memory format."""
        x = x.contiguous(memory_format=MEMORY_FORMATS[self.memory_format])
        outs = []
        x = self._run(self.first, self.stem(x))
        if 0 in self.out_indices:
            outs.append(x)
        stage, last = 1, max(self.out_indices)
        for i, block in enumerate(self.blocks):
            if stage > last:
                break  # nothing further is returned
            x = self._run(block, x)
            if i in self.stage_ends:
                if stage in self.out_indices:
                    outs.append(x)
                stage += 1
        if self.head is not None:
            outs.append(self.head(x))
        # channels_last stays inside: mmcv's CPU RoIAlign (and possibly other
        # ops downstream) reads its input as NCHW whatever its strides, and
        # gives wrong values on a channels_last tensor.
        return tuple(o.contiguous() for o in outs)

    @property
    def with_cp(self) -> bool:
        return self._with_cp

    @with_cp.setter
    def with_cp(self, value: bool) -> None:
        # The blocks checkpoint their atoms' activations (the expanded,
        # depthwise and activated channels of each kernel: most of the
        # memory); the fixed first block is checkpointed whole.
        self._with_cp = bool(value)
        for block in self.blocks:
            block.with_cp = self._with_cp

    def _run(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if block is self.first and self.with_cp and self.training and \
                torch.is_grad_enabled():
            return checkpointed(block, block, x)
        return block(x)

    # ----------------------------------------------------------- training
    def _freeze_stages(self) -> None:
        for stage in range(self.frozen_stages + 1):
            for m in self.stage_modules(stage):
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True) -> 'AtomNASNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, BatchNormBase):
                    m.eval()
        return self

    # ----------------------------------------------------------- surgery
    def keep_atoms(self, plan: Mapping[int, Mapping[int, Sequence[int]]]
                   ) -> List[ParamSlice]:
        """Keep only the given atoms of the given blocks, as one change:
        every block's keep-indices are checked before any block changes.

        A residual block that keeps no atom is replaced by its
        :meth:`AtomicBlock.to_identity` (the identity plus the constant the
        dead block still adds, so eval outputs do not change).

        Args:
            plan: Block index -> (kernel size -> indices of atoms to keep),
                as :meth:`AtomicBlock.keep_atoms` takes it; blocks not in
                the plan are untouched.

        Returns:
            list[ParamSlice]: every parameter replaced or dropped.

        Raises:
            ValueError: a bad index, an unknown kernel, a block without
                residual left with no atom, or atoms asked of an identity
                block; nothing has changed then.
            RuntimeError: the net is deployed (fused).
        """
        self._refuse_if_deployed('keep_atoms')
        collapse = []
        for i, keep in plan.items():
            if not 0 <= i < len(self.blocks):
                raise ValueError(f'keep_atoms: no block {i}')
            block = self.blocks[i]
            if isinstance(block, IdentityBlock):
                if any(len(v) for v in keep.values()):
                    raise ValueError(f'keep_atoms: block {i} is an identity '
                                     'block and has no atoms to keep')
                continue
            split = block.split_keep(keep)
            if not any(len(kept) for kept, _ in split.values()):
                if not block.has_residual:
                    raise ValueError(
                        f'keep_atoms: block {i} has no residual and must keep '
                        'at least one atom')
                collapse.append(i)
        records: List[ParamSlice] = []
        for i, keep in plan.items():
            block = self.blocks[i]
            if isinstance(block, IdentityBlock):
                continue
            if i in collapse:
                drop_params(block, records)
                self.blocks[i] = block.to_identity()
            else:
                records += block.keep_atoms(keep)
        self.restore_memory_format()
        return records

    def plan_to(self, spec: SpecLike, source: str = 'spec') -> dict:
        """The plan (see :meth:`keep_atoms`) that shrinks this net to
        ``spec``, keeping the first atoms of each kernel: used before
        weights saved from a shrunk net overwrite them.

        Raises:
            SpecError: the spec is not a sub-net of this net.
            RuntimeError: the net is deployed (fused).
        """
        self._refuse_if_deployed('reshape_to')
        spec = load_spec(spec)
        mine = self.arch_spec
        if len(spec.blocks) != len(mine.blocks) or \
                spec.stem_channels != mine.stem_channels or \
                spec.first_channels != mine.first_channels:
            raise SpecError(f'{source}: was saved from another architecture '
                            f'({len(spec.blocks)} blocks, stem '
                            f'{spec.stem_channels}) than this net '
                            f'({len(mine.blocks)} blocks, stem '
                            f'{mine.stem_channels})')
        try:
            spec.check_subnet_of(mine, source, 'this net')
        except SpecError as e:
            raise SpecError(f'{e} (another architecture: build the net from '
                            'that spec)') from None
        return {i: {k: list(range(n)) for k, n in want.kernels.items()}
                for i, (want, have) in enumerate(zip(spec.blocks,
                                                     mine.blocks))
                if want.kernels != have.kernels}

    def reshape_to(self, spec: SpecLike, source: str = 'spec'
                   ) -> List[ParamSlice]:
        """Shrink the net's structure to ``spec`` (:meth:`plan_to`, then
        :meth:`keep_atoms`)."""
        return self.keep_atoms(self.plan_to(spec, source))

    def _fit_to_weights(self, module, state_dict, prefix, *args) -> None:
        """Before torch copies ``state_dict`` into this net (a load-state-
        dict pre-hook): shrink the net to the weights' structure when it
        holds fewer atoms (:func:`~atomnas_mm.models.checkpoint.
        spec_of_weights` decides, only from kernels whose every key is
        present; weights of atoms this net lacks are refused). A deployed
        net loads a fused state dict as it is."""
        if self.deployed:
            return
        spec = self.arch_spec
        fitted = spec_of_weights(state_dict, prefix, spec,
                                 self.state_dict())
        if fitted != spec:
            self.reshape_to(fitted, 'state dict')
            adopt_new_params(self)

    # ----------------------------------------------------------- deploy
    def _refuse_if_deployed(self, what: str) -> None:
        if self.deployed:
            raise RuntimeError(
                f'{what}: the net was switched to deploy (BN folded, atoms '
                'padded); shrink or reshape the unfused net, then fuse it')

    @torch.no_grad()
    def switch_to_deploy(self, divisor: int = DEPLOY_DEFAULTS['divisor'],
                         expand: str = DEPLOY_DEFAULTS['expand'],
                         depthwise: str = DEPLOY_DEFAULTS['depthwise'],
                         project: str = DEPLOY_DEFAULTS['project']) -> None:
        """Replace the net in place by its fused inference form (the name
        mmpretrain gives re-parameterisation, e.g. RepVGG's).

        Every BN is folded into the conv before it, with the running
        statistics (the fused net computes what the eval-mode net did),
        identity blocks leave, and each kernel's atoms are padded with zero
        atoms to a multiple of ``divisor``, which changes nothing the net
        computes (see :mod:`atomnas_mm.models.deploy.fused`). Afterwards
        :attr:`arch_spec` still reports the real net (MACs counted from it
        are the real ones), and :meth:`keep_atoms` / :meth:`reshape_to`
        refuse. The fused net has no BN: it is for inference, and training
        it is training another parameterisation. A second call does
        nothing.

        Args:
            divisor: Pad each kernel's atoms to a multiple of this (1: no
                padding). With an all-merged layout only the block's total
                is padded.
            expand, depthwise, project: ``'merged'`` (one conv over all
                atoms; a merged depthwise conv zero-pads its smaller kernels
                to the largest) or ``'split'`` (one conv per kernel). The
                defaults are the fastest measured on CPU
                (``benchmarks/bench_deploy.py``).

        Raises:
            ValueError: a bad layout or divisor, or a norm layer that is not
                a BatchNorm with running statistics (nothing changes then).
        """
        check_layout(expand, depthwise, project, divisor)
        if self.deployed:
            return
        spec = self.arch_spec
        stem = fuse_conv_bn_act(self.stem, 'stem')
        first = FusedFirstBlock(self.first)
        blocks = fuse_blocks(self.blocks, self.stage_ends, divisor, expand,
                             depthwise, project)
        head = fuse_conv_bn_act(self.head, 'head') \
            if self.head is not None else None
        self.stem, self.first, self.head = stem, first, head
        self.blocks = nn.ModuleList(blocks)
        self._deployed_spec = spec
        self.deployed = True
        self.deploy_options = dict(divisor=divisor, expand=expand,
                                   depthwise=depthwise, project=project)
        self.restore_memory_format()
        self.train(self.training)  # new modules take the net's mode

    def restore_memory_format(self) -> None:
        """Re-apply the memory format (after surgery created new
        parameters); parameter objects are kept."""
        self.to(memory_format=MEMORY_FORMATS[self.memory_format])

    # ----------------------------------------------------------- init
    def init_weights(self) -> None:
        """Default init (or the non-``Pretrained`` entries of ``init_cfg``),
        then the ``Pretrained`` checkpoint if there is one, loaded strictly
        (the net was built to its spec, see :meth:`_resolve_arch`)."""
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else \
            [self.init_cfg] if self.init_cfg else []
        pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
        others = [c for c in cfgs if c.get('type') != 'Pretrained']
        if others:
            from mmengine.model import initialize
            initialize(self, others)
        else:
            self._default_init()
        if pretrained:
            self.load_pretrained(pretrained[-1]['checkpoint'],
                                 pretrained[-1].get('prefix'))
        mark_initialized(self)

    def _default_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                fan_out = m.out_channels // m.groups * kh * kw
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (BatchNormBase, nn.GroupNorm)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def load_pretrained(self, path: str, prefix: Optional[str] = None
                        ) -> None:
        """Load this backbone's weights from a checkpoint, strictly.

        Args:
            path: The checkpoint (its ``state_dict``, or a bare state dict).
            prefix: Where the backbone sits in the saved model, e.g.
                ``'backbone.'`` for a classifier's or detector's checkpoint.

        Raises:
            CheckpointError: one line naming the file: no key of the file
                fits (with the prefix to set when the keys show it), keys
                missing or unexpected, or a spec that its weights contradict.
        """
        if self.deployed:
            raise CheckpointError(
                f'{path}: cannot load into a deployed (fused) net; load the '
                'weights first, then call switch_to_deploy()')
        ckpt = load_checkpoint_file(path)
        state = state_dict_of(ckpt, path)
        saved = checkpoint_spec_or_none(ckpt, path)
        if saved is not None:
            check_weights_match_spec(state, saved, path)
        if prefix:
            prefix = prefix if prefix.endswith('.') else prefix + '.'
            state = {k[len(prefix):]: v for k, v in state.items()
                     if k.startswith(prefix)}
        if self.head is None:
            # A classifier's backbone has the head conv, which a detector's
            # (no output needs it) does not build.
            state = {k: v for k, v in state.items()
                     if not k.startswith('head.')}
        mine = set(self.state_dict())
        if not mine & set(state):
            hint = ''
            if not prefix and any(k.startswith('backbone.') for k in state):
                hint = "; its keys start with 'backbone.': set " \
                    "init_cfg=dict(type='Pretrained', checkpoint=..., " \
                    "prefix='backbone.')"
            raise CheckpointError(
                f'{path}: none of its keys{f" under {prefix!r}" if prefix else ""}'
                f' belongs to this backbone{hint}')
        result = self.load_state_dict(state, strict=False)
        bad = [('missing', result.missing_keys),
               ('unexpected', result.unexpected_keys)]
        for what, keys in bad:
            if keys:
                raise CheckpointError(
                    f'{path}: {len(keys)} {what} key(s) for this backbone '
                    f'(first: {keys[0]}); is it a checkpoint of this net?')
