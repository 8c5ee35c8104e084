"""Read a torch file written by someone else's code without running any of it.

``torch.save`` files are pickles, and unpickling calls whatever functions
the file names. This reader resolves names itself:

* tensors and storages: only through the reconstructors below, which are
  this module's own functions and check their arguments;
* ``collections.OrderedDict`` (state dicts) and ``_codecs.encode`` (how
  protocol 2 stores bytes): the only other callables;
* any other class becomes an inert :class:`Placeholder` when the file
  creates an instance of it the way pickle stores objects (``NEWOBJ`` +
  state): the placeholder records the arguments and state and never runs
  anything. The authors' training meters arrive this way;
* *calling* any other name (``os.system``, ``builtins.eval``,
  ``builtins.getattr``, a class's constructor...) is refused with
  :class:`UnsafePickleError` before anything is called.

Both torch formats are read: the zip format (torch >= 1.6) and the legacy
one (a pickle followed by the raw storages, torch < 1.6).
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import Any, BinaryIO, Callable, Dict, Optional

import torch

#: torch's storage class names and the dtype each stands for.
STORAGE_DTYPES = {
    'FloatStorage': torch.float32, 'DoubleStorage': torch.float64,
    'HalfStorage': torch.float16, 'BFloat16Storage': torch.bfloat16,
    'LongStorage': torch.int64, 'IntStorage': torch.int32,
    'ShortStorage': torch.int16, 'CharStorage': torch.int8,
    'ByteStorage': torch.uint8, 'BoolStorage': torch.bool,
    'UntypedStorage': torch.uint8,
}
# The legacy format's header (torch.serialization's constants).
LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001


class UnsafePickleError(ValueError):
    """The file asks to call something outside the allow-list."""


class BrokenFileError(ValueError):
    """The file is empty, truncated or not a torch file at all."""


# ------------------------------------------------------------------ objects
class _PlaceholderMeta(type):
    """Calling a placeholder class is what a crafted pickle does to run
    code (``REDUCE``): refuse it. Pickle's ordinary object creation
    (``NEWOBJ``) calls ``cls.__new__`` directly and is allowed."""

    def __call__(cls, *args, **kwargs):
        raise UnsafePickleError(f'it calls {cls.pickled_name}, which a '
                                'checkpoint never needs')


class Placeholder(metaclass=_PlaceholderMeta):
    """An object of a class this reader does not know: it holds what the
    file gave it (``args``, ``state``, ``items``) and does nothing else."""
    pickled_name = '?'

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items=[])
        return obj

    def __setstate__(self, state: Any) -> None:
        self.__dict__['state'] = state

    # A subclass of dict or list stores its items through these.
    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)

    def __repr__(self) -> str:
        return f'<placeholder {self.pickled_name}>'


_PLACEHOLDER_TYPES: Dict[str, type] = {}


def _placeholder_type(name: str) -> type:
    if name not in _PLACEHOLDER_TYPES:
        _PLACEHOLDER_TYPES[name] = _PlaceholderMeta(
            name.rsplit('.', 1)[-1], (Placeholder, ),
            dict(pickled_name=name, __module__=__name__))
    return _PLACEHOLDER_TYPES[name]


class _StorageKind:
    """What a storage class name resolves to: only its dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _Storage:
    """One storage's bytes (a flat tensor of its dtype) and the element
    offset of a legacy view into it."""

    def __init__(self, flat: torch.Tensor, offset: int = 0) -> None:
        self.flat, self.offset = flat, offset


# ----------------------------------------------------- the allowed callables
def _check_ints(values: Any, what: str) -> tuple:
    if not isinstance(values, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UnsafePickleError(f'a tensor with a bad {what} ({values!r})')
    return tuple(values)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any,
                    *_ignored: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` (and the older ``_v1``), from
    checked arguments; requires_grad, hooks and metadata are dropped."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError('a tensor is rebuilt from something other '
                                'than a storage of the file')
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise UnsafePickleError(f'a tensor with a bad offset ({offset!r})')
    size, stride = _check_ints(size, 'size'), _check_ints(stride, 'stride')
    try:
        return torch.as_strided(storage.flat, size, stride,
                                storage.offset + offset)
    except RuntimeError as e:  # out of the storage's bounds
        raise BrokenFileError(f'a tensor does not fit its storage ('
                              f'{str(e).splitlines()[0][:120]})') from None


def _rebuild_parameter(data: Any, *_ignored: Any) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError('a parameter is rebuilt from a non-tensor')
    return data


def _encode(text: Any, encoding: str = 'latin1') -> bytes:
    """``_codecs.encode``: protocol 2 stores ``bytes`` as latin-1 text."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise UnsafePickleError('it calls _codecs.encode with other than '
                                'latin-1 text')
    return text.encode('latin1')


ALLOWED: Dict[str, Any] = {
    'torch._utils._rebuild_tensor_v2': _rebuild_tensor,
    'torch._utils._rebuild_tensor': _rebuild_tensor,
    'torch._utils._rebuild_parameter': _rebuild_parameter,
    'collections.OrderedDict': collections.OrderedDict,
    '_codecs.encode': _encode,
}


# ------------------------------------------------------------- unpickling
class _Unpickler(pickle.Unpickler):
    """Resolves names as the module docstring says; storages come from
    ``storage_loader`` (None: the pickle may not hold any)."""

    def __init__(self, file: BinaryIO,
                 storage_loader: Optional[Callable[[tuple], _Storage]] = None
                 ) -> None:
        super().__init__(file, encoding='utf-8')
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 writes Python 2's module names (__builtin__): use the
        # Python 3 ones, as pickle's own find_class does.
        module, name = NAME_MAPPING.get((module, name), (module, name))
        module = IMPORT_MAPPING.get(module, module)
        if module in ('torch', 'torch.storage') and name in STORAGE_DTYPES:
            return _StorageKind(STORAGE_DTYPES[name])
        return ALLOWED.get(f'{module}.{name}') or \
            _placeholder_type(f'{module}.{name}')

    def persistent_load(self, pid: Any) -> _Storage:
        if self._storage_loader is None or not isinstance(pid, tuple) or \
                len(pid) < 5 or pid[0] != 'storage' or \
                not isinstance(pid[1], _StorageKind):
            raise UnsafePickleError(f'it refers to an object outside the '
                                    f'pickle ({str(pid)[:60]})')
        return self._storage_loader(pid)


def _unpickle(file: BinaryIO, storage_loader=None) -> Any:
    """One pickle from ``file``; the file is left right after it (the C
    unpickler gives back what it read ahead), as the legacy format needs."""
    try:
        return _Unpickler(file, storage_loader).load()
    except (UnsafePickleError, BrokenFileError):
        raise
    except EOFError:
        raise BrokenFileError('the file is truncated') from None
    except Exception as e:  # noqa: BLE001  (a malformed pickle: one line)
        detail = str(e).splitlines()[0][:120] if str(e) else ''
        raise BrokenFileError(f'not a readable pickle ({type(e).__name__}: '
                              f'{detail})') from None


def _flat(buffer: bytearray, dtype: torch.dtype) -> torch.Tensor:
    raw = torch.frombuffer(buffer, dtype=torch.uint8) if len(buffer) else \
        torch.empty(0, dtype=torch.uint8)
    size = torch.empty(0, dtype=dtype).element_size()
    if len(buffer) % size:
        raise BrokenFileError('a storage\'s size is not a whole number of '
                              'elements')
    return raw.view(dtype)


def _load_zip(path: str) -> Any:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise BrokenFileError('the file is truncated (a zip without its '
                              'directory)') from None
    with archive:
        names = archive.namelist()
        pkl = [n for n in names
               if n.endswith('/data.pkl') and n.count('/') == 1]
        if not pkl:
            raise BrokenFileError('a zip file but not a torch checkpoint (no '
                                  'data.pkl)')
        root = pkl[0][:-len('data.pkl')]
        if f'{root}byteorder' in names and \
                archive.read(f'{root}byteorder') != b'little':
            raise BrokenFileError('written on a big-endian machine, which '
                                  'this reader does not support')
        storages: Dict[str, _Storage] = {}

        def load_storage(pid: tuple) -> _Storage:
            kind, key = pid[1], str(pid[2])
            if key not in storages:
                try:
                    buffer = bytearray(archive.read(f'{root}data/{key}'))
                except KeyError:
                    raise BrokenFileError(f'storage {key} is missing'
                                          ) from None
                storages[key] = _Storage(_flat(buffer, kind.dtype))
            return storages[key]

        try:
            data = archive.read(pkl[0])
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise BrokenFileError(f'a damaged zip ({e})') from None
        return _unpickle(io.BytesIO(data), load_storage)


def _load_legacy(path: str) -> Any:
    with open(path, 'rb') as f:
        if _unpickle(f) != LEGACY_MAGIC:
            raise BrokenFileError('not a torch file (no torch magic number)')
        if _unpickle(f) != LEGACY_PROTOCOL:
            raise BrokenFileError('an unknown torch file version')
        _unpickle(f)  # sys_info: endianness and type sizes of the writer
        buffers: Dict[str, bytearray] = {}
        roots: Dict[str, _Storage] = {}

        def load_storage(pid: tuple) -> _Storage:
            if len(pid) != 6 or not isinstance(pid[4], int) or pid[4] < 0:
                raise BrokenFileError('a malformed storage reference')
            kind, key, numel, view = pid[1], str(pid[2]), pid[4], pid[5]
            if key not in roots:  # its bytes follow the pickle
                size = torch.empty(0, dtype=kind.dtype).element_size()
                buffers[key] = bytearray(numel * size)
                roots[key] = _Storage(_flat(buffers[key], kind.dtype))
            if view is None:
                return roots[key]
            return _Storage(roots[key].flat, int(view[1]))

        result = _unpickle(f, load_storage)
        keys = _unpickle(f)
        if not isinstance(keys, list):
            raise BrokenFileError('a malformed storage list')
        for key in map(str, keys):
            # Each storage: its element count (int64, little-endian), then
            # its bytes.
            head = f.read(8)
            if key not in buffers or len(head) < 8:
                raise BrokenFileError('the file is truncated')
            buffer = buffers[key]
            numel, = struct.unpack('<q', head)
            if numel * roots[key].flat.element_size() != len(buffer):
                raise BrokenFileError(f'storage {key} has another size than '
                                      'the pickle says')
            if f.readinto(buffer) < len(buffer):  # in place: tensors share it
                raise BrokenFileError('the file is truncated')
    return result




def safe_torch_load(path: str) -> Any:
    """Load a torch file (zip or legacy format) without running its code.

    Tensors come back on the CPU; objects of unknown classes as
    :class:`Placeholder`.

    Raises:
        UnsafePickleError: the file calls something outside the allow-list
            (nothing was called).
        BrokenFileError: empty, truncated, or not a torch file.
        OSError: the file cannot be opened.
    """
    with open(path, 'rb') as f:
        head = f.read(2)
    if not head:
        raise BrokenFileError('the file is empty (a write that never '
                              'finished?)')
    if head == b'PK':
        return _load_zip(path)
    if head[:1] == b'\x80':
        return _load_legacy(path)
    raise BrokenFileError('not a torch checkpoint (neither a zip nor a '
                          'pickle)')
