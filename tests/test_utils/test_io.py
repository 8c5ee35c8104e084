"""dump_json_atomic: complete files only, the old one kept on failure."""
import json

import pytest

from atomnas_mm.utils.io import dump_json_atomic


def test_writes_and_replaces(tmp_path):
    path = str(tmp_path / 'r.json')
    dump_json_atomic([1, 2], path)
    assert json.load(open(path)) == [1, 2]
    dump_json_atomic({'a': 3}, path, indent=1)
    assert json.load(open(path)) == {'a': 3}
    assert list(tmp_path.iterdir()) == [tmp_path / 'r.json']


def test_failure_midway_keeps_the_previous_file(tmp_path):
    path = str(tmp_path / 'r.json')
    dump_json_atomic([{'top1': 80.0}], path)
    with pytest.raises(TypeError):
        dump_json_atomic([{'top1': 81.0}, object()], path)  # fails mid-dump
    assert json.load(open(path)) == [{'top1': 80.0}]
    assert list(tmp_path.iterdir()) == [tmp_path / 'r.json']
