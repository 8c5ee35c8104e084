"""The architecture spec: one JSON description for the supernet and every
searched net.

The spec knows nothing of torch. :class:`AtomNASNet` is built from it, the
cost model counts it, and the search writes a new one each time it removes
atoms. Layout (``to_dict``)::

    {
      "stem_channels": 32,
      "first_block": {"out_channels": 16, "kernel_size": 3},
      "blocks": [
        {"in_channels": 16, "out_channels": 24, "stride": 2,
         "kernels": {"3": 96, "5": 96, "7": 96}},
        ...
      ],
      "head_channels": 1280,
      "activation": "relu",
      "se_ratio": 0.0
    }

``kernels`` maps a depthwise kernel size to its number of expanded channels
(atoms). A kernel with 0 atoms is dropped. Residuals are not stored: a block
has one when its stride is 1 and its input and output channels are equal.
"""
from __future__ import annotations

import copy
import json
import math
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Tuple, Union

SPEC_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'specs')
# Activation name in a spec -> the torch.nn module that implements it.
ACTIVATIONS = {'relu': 'ReLU', 'swish': 'SiLU'}

SpecLike = Union[str, os.PathLike, Mapping[str, Any], 'ArchSpec']
#: One kernel of one block: (block index, kernel size). Its atoms share one
#: cost and one depthwise BN.
Key = Tuple[int, int]


class SpecError(ValueError):
    """An invalid architecture spec. The message is one line that names the
    place (``blocks[3].kernels``) and what is wrong there."""


def _check_int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f'{where}: expected an integer, got {value!r}')
    if value < minimum:
        raise SpecError(f'{where}: must be >= {minimum}, got {value}')
    return value


def _check_keys(data: Mapping, allowed: tuple, required: tuple,
                where: str) -> None:
    if not isinstance(data, Mapping):
        raise SpecError(f'{where}: expected an object, got '
                        f'{type(data).__name__}')
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise SpecError(f'{where}: unknown key {unknown[0]!r} '
                        f'(allowed: {", ".join(allowed)})')
    missing = [k for k in required if k not in data]
    if missing:
        raise SpecError(f'{where}: missing key {missing[0]!r}')


@dataclass
class BlockSpec:
    """One searchable block: 1x1 expand -> per-kernel depthwise -> 1x1
    project.

    Attributes:
        in_channels: Channels entering the block.
        out_channels: Channels leaving the block.
        stride: Stride of the depthwise convs (1 or 2).
        kernels: Kernel size -> number of expanded channels (atoms), in
            ascending kernel order, zero counts removed.
    """
    in_channels: int
    out_channels: int
    stride: int
    kernels: Dict[int, int] = field(default_factory=dict)

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def num_atoms(self) -> int:
        return sum(self.kernels.values())

    @property
    def is_identity(self) -> bool:
        """A block whose atoms all died: it only passes its input on."""
        return self.num_atoms == 0

    @classmethod
    def from_dict(cls, data: Mapping, where: str) -> 'BlockSpec':
        _check_keys(data, ('in_channels', 'out_channels', 'stride', 'kernels'),
                    ('in_channels', 'out_channels', 'stride', 'kernels'),
                    where)
        cin = _check_int(data['in_channels'], f'{where}.in_channels', 1)
        cout = _check_int(data['out_channels'], f'{where}.out_channels', 1)
        stride = data['stride']
        if isinstance(stride, bool) or not isinstance(stride, int) or \
                stride not in (1, 2):
            raise SpecError(f'{where}.stride: must be 1 or 2, got {stride!r}')
        raw = data['kernels']
        if not isinstance(raw, Mapping):
            raise SpecError(f'{where}.kernels: expected an object mapping '
                            f'kernel size to channels, got {raw!r}')
        kernels: Dict[int, int] = {}
        for key, count in raw.items():
            # JSON keys are strings; an inline dict may use ints. Anything
            # else (3.0, '3.5', True) is refused rather than truncated.
            if isinstance(key, bool) or not (
                    isinstance(key, int) or
                    (isinstance(key, str) and key.strip().lstrip('-').isdigit())):
                raise SpecError(f'{where}.kernels: kernel size {key!r} is not '
                                'an integer')
            k = int(key)
            if k <= 0 or k % 2 == 0:
                raise SpecError(f'{where}.kernels: kernel size {k} must be odd '
                                'and positive')
            if count is None:
                raise SpecError(f'{where}.kernels.{k}: no channel count given')
            count = _check_int(count, f'{where}.kernels.{k}', 0)
            if k in kernels:
                raise SpecError(f'{where}.kernels: kernel size {k} given twice')
            if count > 0:
                kernels[k] = count
        block = cls(cin, cout, stride, dict(sorted(kernels.items())))
        if block.is_identity and not block.has_residual:
            raise SpecError(f'{where}.kernels: block has no atoms and no '
                            f'residual ({cin}->{cout}, stride {stride}), so it '
                            'cannot become the identity')
        return block

    def to_dict(self) -> dict:
        return dict(in_channels=self.in_channels,
                    out_channels=self.out_channels, stride=self.stride,
                    kernels={str(k): v for k, v in self.kernels.items()})


@dataclass
class ArchSpec:
    """A whole network: stem, fixed first block, searchable blocks, head.

    Attributes:
        stem_channels: Output channels of the 3x3 stride-2 stem conv.
        first_channels: Output channels of the fixed first block (a
            MobileNetV2 block with expansion 1, stride 1).
        first_kernel: Depthwise kernel of the fixed first block.
        blocks: The searchable blocks, in order.
        head_channels: Channels of the final 1x1 conv.
        activation: ``'relu'`` or ``'swish'``.
        se_ratio: Squeeze-and-excitation ratio (0 disables SE). SE sits in
            every block, the fixed first one included (this reproduces the
            published "+" MACs), on the depthwise output; its squeeze width
            is ``round(se_ratio * block input channels)``.
    """
    stem_channels: int
    first_channels: int
    blocks: List[BlockSpec]
    head_channels: int = 1280
    activation: str = 'relu'
    se_ratio: float = 0.0
    first_kernel: int = 3

    # ------------------------------------------------------------ loading
    @classmethod
    def from_dict(cls, data: Mapping) -> 'ArchSpec':
        where = 'spec'
        _check_keys(data, ('stem_channels', 'first_block', 'blocks',
                           'head_channels', 'activation', 'se_ratio'),
                    ('stem_channels', 'first_block', 'blocks'), where)
        stem = _check_int(data['stem_channels'], 'spec.stem_channels', 1)
        first = data['first_block']
        _check_keys(first, ('out_channels', 'kernel_size'), ('out_channels', ),
                    'first_block')
        first_c = _check_int(first['out_channels'], 'first_block.out_channels',
                             1)
        first_k = _check_int(first.get('kernel_size', 3),
                             'first_block.kernel_size', 1)
        if first_k % 2 == 0:
            raise SpecError(f'first_block.kernel_size: kernel size {first_k} '
                            'must be odd and positive')
        raw_blocks = data['blocks']
        if not isinstance(raw_blocks, list):
            raise SpecError('spec.blocks: expected a list of blocks')
        blocks = [
            BlockSpec.from_dict(b, f'blocks[{i}]')
            for i, b in enumerate(raw_blocks)
        ]
        prev = first_c
        for i, b in enumerate(blocks):
            if b.in_channels != prev:
                raise SpecError(f'blocks[{i}].in_channels: is {b.in_channels} '
                                f'but the previous layer gives {prev}')
            prev = b.out_channels
        head = _check_int(data.get('head_channels', 1280),
                          'spec.head_channels', 1)
        act = data.get('activation', 'relu')
        if act not in ACTIVATIONS:
            raise SpecError(f'spec.activation: must be one of '
                            f'{", ".join(ACTIVATIONS)}, got {act!r}')
        se = data.get('se_ratio', 0.0)
        if isinstance(se, bool) or not isinstance(se, (int, float)) or \
                not math.isfinite(se) or se < 0:
            raise SpecError(f'spec.se_ratio: must be a finite number >= 0, '
                            f'got {se!r}')
        return cls(stem, first_c, blocks, head, act, float(se), first_k)

    @classmethod
    def load(cls, spec: SpecLike) -> 'ArchSpec':
        """Load a spec given by shipped name, JSON path, dict or ArchSpec."""
        if isinstance(spec, ArchSpec):
            return copy.deepcopy(spec)
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if isinstance(spec, (str, os.PathLike)):
            path = os.fspath(spec)
            if not osp.isfile(path):
                shipped = osp.join(SPEC_DIR, f'{path}.json')
                if osp.isfile(shipped):
                    path = shipped
                else:
                    raise SpecError(
                        f'spec {path!r}: no such file and no shipped spec of '
                        f'that name (shipped: {", ".join(shipped_specs())})')
            try:
                with open(path, encoding='utf-8') as f:
                    data = json.load(f)
            except UnicodeDecodeError:
                raise SpecError(f'{path}: not a UTF-8 text file, so not a '
                                'JSON spec') from None
            except json.JSONDecodeError as e:
                raise SpecError(f'{path}: not valid JSON (line {e.lineno}, '
                                f'column {e.colno}: {e.msg})') from None
            try:
                return cls.from_dict(data)
            except SpecError as e:
                raise SpecError(f'{path}: {e}') from None
        raise SpecError(f'spec: expected a name, a path or a dict, got '
                        f'{type(spec).__name__}')

    # ------------------------------------------------------------ writing
    def to_dict(self) -> dict:
        return dict(
            stem_channels=self.stem_channels,
            first_block=dict(out_channels=self.first_channels,
                             kernel_size=self.first_kernel),
            blocks=[b.to_dict() for b in self.blocks],
            head_channels=self.head_channels,
            activation=self.activation,
            se_ratio=self.se_ratio)

    def to_json(self) -> str:
        """JSON with one block per line, so that a diff of two searched
        specs reads block by block."""
        d = self.to_dict()
        blocks = d.pop('blocks')
        head = json.dumps(d, indent=2)[:-2]  # drop the closing "\n}"
        lines = ',\n'.join(f'    {json.dumps(b)}' for b in blocks)
        return f'{head},\n  "blocks": [\n{lines}\n  ]\n}}\n'

    def dump(self, path: str) -> None:
        tmp = f'{path}.tmp'
        with open(tmp, 'w') as f:
            f.write(self.to_json())
        os.replace(tmp, path)  # never leave a half-written spec behind

    # ------------------------------------------------------------ queries
    @property
    def num_atoms(self) -> int:
        return sum(b.num_atoms for b in self.blocks)

    def se_channels(self, in_channels: int) -> int:
        """Squeeze width of the SE module of a block with ``in_channels``
        inputs: ``round(se_ratio * in_channels)``, at least 1; 0 when SE is
        off. (SE sits in every block, the fixed first one included.)"""
        if self.se_ratio <= 0:
            return 0
        return max(1, int(round(self.se_ratio * in_channels)))

    @property
    def first_has_residual(self) -> bool:
        return self.stem_channels == self.first_channels

    def stage_ends(self) -> List[int]:
        """Indices of the last searchable block of each stage.

        A stage starts at a block that changes resolution or width, as in
        the supernet table (stage 5, 80->96 at stride 1, is its own stage).
        """
        ends = []
        for i, b in enumerate(self.blocks):
            if i > 0 and not b.has_residual:
                ends.append(i - 1)
        if self.blocks:
            ends.append(len(self.blocks) - 1)
        return ends

    def stage_channels(self) -> List[int]:
        """Output channels of each stage as :class:`AtomNASNet` numbers them:
        stem + first block, each stage of searchable blocks, the head."""
        return [self.first_channels] + [
            self.blocks[i].out_channels for i in self.stage_ends()
        ] + [self.head_channels]

    def check_subnet_of(self, supernet: 'ArchSpec', name: str = 'the spec',
                        other: str = 'the supernet') -> None:
        """Raise a one-line :class:`SpecError` unless every block of this
        spec keeps the channels and stride of the same block of
        ``supernet`` and at most its atoms of each kernel (i.e. a search
        from ``supernet`` could have produced it)."""
        if len(self.blocks) != len(supernet.blocks):
            raise SpecError(f'{name} has {len(self.blocks)} blocks but '
                            f'{other} has {len(supernet.blocks)}')
        for i, (b, s) in enumerate(zip(self.blocks, supernet.blocks)):
            if (b.in_channels, b.out_channels, b.stride) != \
                    (s.in_channels, s.out_channels, s.stride):
                raise SpecError(
                    f'blocks[{i}]: {name} has {b.in_channels}->'
                    f'{b.out_channels} stride {b.stride}, {other} '
                    f'{s.in_channels}->{s.out_channels} stride {s.stride}')
            for k, n in b.kernels.items():
                if n > s.kernels.get(k, 0):
                    raise SpecError(
                        f'blocks[{i}].kernels.{k}: {name} has {n} atoms of '
                        f'kernel {k}, {other} only {s.kernels.get(k, 0)}')

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchSpec) and self.to_dict() == other.to_dict()


def shipped_specs() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(SPEC_DIR) if f.endswith('.json'))


def load_spec(spec: SpecLike) -> ArchSpec:
    """Shorthand for :meth:`ArchSpec.load`."""
    return ArchSpec.load(spec)
