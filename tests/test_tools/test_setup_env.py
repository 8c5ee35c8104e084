"""tools/setup_env.sh's decisions, without installing anything: which stamp
satisfies which level, that a change of the requirements is seen, and that
a run which stops midway leaves no stamp to trust. (What it installs is
measured from fresh clones; see the README.)"""
import os
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.fixture
def root(tmp_path):
    """A copy of what the script hashes, so that it can be changed."""
    (tmp_path / 'tools').mkdir()
    shutil.copy(f'{ROOT}/tools/setup_env.sh', tmp_path / 'tools')
    shutil.copytree(f'{ROOT}/requirements', tmp_path / 'requirements')
    shutil.copy(f'{ROOT}/setup.py', tmp_path)
    (tmp_path / '.venv').mkdir()
    return tmp_path


def _setup(root, *args, **env):
    return subprocess.run(['bash', str(root / 'tools' / 'setup_env.sh'),
                           *args], capture_output=True, text=True,
                          timeout=60, env={'PATH': '/usr/bin:/bin',
                                           'HOME': str(root), **env})


def _check(root, level):
    """(up to date?, the stamp that level wants)."""
    proc = _setup(root, level, '--check')
    assert proc.returncode in (0, 1), proc.stderr
    want = re.search(r"want '(\w+ \w+)'", proc.stdout)
    return proc.returncode == 0, want and want.group(1)


def _stamp(root, text):
    (root / '.venv' / '.atomnas-installed').write_text(text + '\n')


def test_full_satisfies_light_and_not_the_reverse(root):
    ok, want_light = _check(root, 'light')
    assert not ok and want_light.startswith('light ')
    ok, want_full = _check(root, 'full')
    assert not ok and want_full == 'full ' + want_light.split()[1]

    _stamp(root, want_light)
    assert _check(root, 'light')[0]
    assert not _check(root, 'full')[0]

    _stamp(root, want_full)
    assert _check(root, 'light')[0]
    assert _check(root, 'full')[0]
    # The default level is full.
    assert _setup(root, '--check').returncode == 0
    _stamp(root, want_light)
    assert _setup(root, '--check').returncode == 1


def test_a_changed_requirement_file_is_seen(root):
    _stamp(root, _check(root, 'full')[1])
    assert _check(root, 'light')[0] and _check(root, 'full')[0]
    with open(root / 'requirements' / 'runtime.txt', 'a') as f:
        f.write('tqdm\n')
    assert not _check(root, 'light')[0]
    assert not _check(root, 'full')[0]


def test_a_run_that_stops_midway_leaves_no_stamp(root):
    """A full set-up over a current light stamp fails at once (here: no
    Python to create the venv with). The light stamp must be gone, or the
    next `make demo` would trust a half-changed .venv."""
    _stamp(root, _check(root, 'light')[1])
    proc = _setup(root, 'full', PYTHON='false')
    assert proc.returncode != 0
    assert not (root / '.venv' / '.atomnas-installed').exists()
    assert not _check(root, 'light')[0]


def test_an_up_to_date_venv_is_left_alone(root):
    _stamp(root, _check(root, 'full')[1])
    # PYTHON=false: any attempt to create or change .venv would fail.
    proc = _setup(root, 'light', PYTHON='false')
    assert proc.returncode == 0, proc.stderr
    assert 'environment up to date (full set-up' in proc.stdout


def test_unknown_argument(root):
    proc = _setup(root, 'fast')
    assert proc.returncode == 2 and 'usage' in proc.stderr


def test_make_demo_is_light_and_make_test_full():
    def commands(target):
        # Run from a clean environment: under a parent make (CI calls
        # `make test`) MAKEFLAGS would add 'Entering directory' lines.
        env = {k: v for k, v in os.environ.items()
               if k not in ('MAKEFLAGS', 'MAKELEVEL', 'MFLAGS')}
        return subprocess.run(['make', '--no-print-directory', '-n', target],
                              cwd=ROOT, env=env, capture_output=True,
                              text=True, check=True).stdout.splitlines()
    assert commands('demo') == ['bash tools/setup_env.sh light',
                                '.venv/bin/python tools/run_demo.py']
    assert commands('test')[0] == 'bash tools/setup_env.sh full'
    assert commands('setup') == ['bash tools/setup_env.sh full']
