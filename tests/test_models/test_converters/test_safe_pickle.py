"""The converter's reader runs nothing from the file: real attack files
(which do create their marker under torch's full unpickler, checked in a
subprocess) are refused in one line and the marker never appears; unknown
classes become inert placeholders; both torch formats are read."""
import builtins
import os
import subprocess
import sys

import pytest
import torch

from atomnas_mm.models.converters import (BrokenFileError, Placeholder,
                                          UnsafePickleError, safe_torch_load)
from tests.test_models.test_converters.authors_layout import (
    ScalarMeter, their_modules)
from tests.test_models.test_converters.test_authors import converter


class _System:
    """Runs ``os.system(cmd)`` when unpickled."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd, )


class _Eval:
    """Runs ``eval(code)`` when unpickled."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return builtins.eval, (self.code, )


class _ImportOs:
    def __reduce__(self):
        return builtins.__import__, ('os', )


class _GetSystem:
    """``getattr(__import__('os'), 'system')``: a callable made by the file
    itself, the gadget chain that a name allow-list of plain functions must
    stop."""

    def __call__(self, *args):  # pickle wants the reduce function callable
        raise AssertionError('never called while saving')

    def __reduce__(self):
        return builtins.getattr, (_ImportOs(), 'system')


class _Gadget:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return _GetSystem(), (self.cmd, )


class _Constructor:
    """Calls a class's constructor (``REDUCE`` on a class): the meters'
    class is only ever created the way pickle stores objects."""

    def __reduce__(self):
        return ScalarMeter, ('x', )


ATTACKS = {
    'os.system': lambda m: _System(f'touch {m}'),
    'eval': lambda m: _Eval(f"open({str(m)!r}, 'w').close()"),
    'getattr gadget': lambda m: _Gadget(f'touch {m}'),
}


def _checkpoint(payload):
    """Their checkpoint with a payload where their meters go."""
    return {'model': {'module.features.0.0.weight': torch.ones(2, 3, 3, 3)},
            'ema': None, 'last_epoch': 3, 'meters': payload}


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('attack', list(ATTACKS))
def test_attack_files_are_refused_and_run_nothing(attack, legacy, tmp_path):
    marker = tmp_path / 'MARKER'
    path = str(tmp_path / 'attack.pt')
    torch.save(_checkpoint(ATTACKS[attack](marker)), path,
               _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()

    with pytest.raises(UnsafePickleError, match='it calls '):
        safe_torch_load(path)
    with pytest.raises(SystemExit) as e:
        converter.main([path, str(tmp_path / 'out.pth')])
    msg = str(e.value.code)
    assert msg.startswith(f'error: {path}: refused: it calls ') and \
        'nothing in it was run' in msg and '\n' not in msg, msg
    assert not marker.exists()
    assert not (tmp_path / 'out.pth').exists()

    # The file is a real attack: torch's full unpickler runs it.
    subprocess.run([sys.executable, '-c', 'import sys, torch; torch.load('
                    'sys.argv[1], weights_only=False)', path],
                   capture_output=True, timeout=120)
    assert marker.exists()


def test_calling_an_unknown_class_is_refused(tmp_path):
    path = str(tmp_path / 'c.pt')
    with their_modules():
        torch.save(_checkpoint(_Constructor()), path)
    with pytest.raises(UnsafePickleError,
                       match='it calls utils.meters.ScalarMeter'):
        safe_torch_load(path)


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_reads_both_formats_and_keeps_unknown_objects_inert(legacy,
                                                            tmp_path):
    big = torch.randn(6, 5)
    obj = {'view': big[1:4, 2:], 'half': torch.randn(3).half(),
           'long': torch.arange(4), 'bytes': b'\x00\xff', 'scalar':
           torch.tensor(0.5), 'meters': {'loss': ScalarMeter('train_loss')}}
    path = str(tmp_path / 'x.pt')
    with their_modules():
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    got = safe_torch_load(path)
    for k in ('view', 'half', 'long', 'scalar'):
        assert got[k].dtype == obj[k].dtype and torch.equal(got[k], obj[k])
    assert got['bytes'] == b'\x00\xff'
    meter = got['meters']['loss']
    assert isinstance(meter, Placeholder)
    assert meter.pickled_name == 'utils.meters.ScalarMeter'
    assert meter.state == {'name': 'train_loss', 'steps': 3,
                           'values': [0.5, 0.25]}


def test_broken_files(tmp_path):
    good = str(tmp_path / 'good.pt')
    torch.save({'w': torch.randn(100)}, good)
    data = open(good, 'rb').read()
    cases = {'empty': b'', 'text': b'not a checkpoint',
             'half a zip': data[:len(data) // 2]}
    for name, content in cases.items():
        path = tmp_path / f'{name}.pt'
        path.write_bytes(content)
        with pytest.raises(BrokenFileError):
            safe_torch_load(str(path))
