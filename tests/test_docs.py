"""The documentation stays true to the repository.

* every relative link of README.md, docs/**/*.md, configs/**/README.md and
  benchmarks/README.md names an existing file, and an existing heading when
  it has an ``#anchor`` (GitHub's slugs);
* every command of their ```bash blocks that runs a repository file names
  one that exists, every ``--flag`` given to a Python tool is in that tool's
  ``--help`` (one subprocess per tool, flags after ``--cfg-options`` are
  config keys and not checked), every ``make X`` is a Makefile target;
* README.md stays a few screens (at most 12,000 bytes), and the docs
  describe the software, not its planning.
"""
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from glob import glob

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
README_LIMIT = 12000


def _doc_files():
    files = [osp.join(ROOT, 'README.md'), osp.join(ROOT, 'benchmarks',
                                                   'README.md')]
    files += glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True)
    files += glob(osp.join(ROOT, 'configs', '**', 'README.md'),
                  recursive=True)
    return sorted(f for f in set(files) if osp.isfile(f))


DOCS = _doc_files()
IDS = [osp.relpath(f, ROOT) for f in DOCS]

FENCE = re.compile(r'^(\s*)(```+|~~~+)(.*)$')


def _split_fences(text):
    """(prose lines, code blocks): prose with fenced blocks blanked out
    (line numbers kept), and (language, first line number, lines) per
    block."""
    prose, blocks = [], []
    block = None
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if block is None and m:
            block = (m.group(2)[0], m.group(3).strip().lower(), n, [])
            prose.append('')
        elif block is not None:
            if m and m.group(2)[0] == block[0] and not m.group(3).strip():
                blocks.append((block[1], block[2], block[3]))
                block = None
            else:
                block[3].append(line)
            prose.append('')
        else:
            prose.append(line)
    return prose, blocks


def _read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


# ------------------------------------------------------------------ anchors
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text (code spans,
    links and emphasis markers removed) lowercased, every character but
    letters, digits, spaces, '-' and '_' dropped, spaces turned to '-'."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # links
    text = text.replace('`', '')
    text = re.sub(r'(\*\*|__|\*)', '', text)
    text = text.strip().lower()
    text = ''.join(c for c in text if c.isalnum() or c in ' -_')
    return text.replace(' ', '-')


@lru_cache(maxsize=None)
def anchors_of(path: str) -> frozenset:
    prose, _ = _split_fences(_read(path))
    seen, out = {}, set()
    for line in prose:
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f'{base}-{n}')
        seen[base] = n + 1
    return frozenset(out)


# -------------------------------------------------------------------- links
INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?'
                         r'(?:\s+"[^"]*")?\s*\)')
REF_LINK = re.compile(r'^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$')


def links_of(path):
    """(line number, target) of every link outside code."""
    prose, _ = _split_fences(_read(path))
    for n, line in enumerate(prose, 1):
        line = re.sub(r'`[^`]*`', '', line)  # code spans are not links
        for m in INLINE_LINK.finditer(line):
            yield n, m.group(1)
        m = REF_LINK.match(line)
        if m:
            yield n, m.group(1)


def _external(target):
    return re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', target) is not None


def check_link(doc, target):
    """None when ``target`` (a link in ``doc``) resolves, else why not."""
    if _external(target):
        return None
    path, _, anchor = target.partition('#')
    if path:
        full = osp.normpath(osp.join(osp.dirname(doc), path))
        if not full.startswith(ROOT + os.sep) and full != ROOT:
            return f'{target}: outside the repository'
        if not osp.exists(full):
            return f'{target}: no such file'
    else:
        full = doc
    if anchor and full.endswith('.md'):
        if anchor not in anchors_of(full):
            return (f'{target}: no heading #{anchor} in '
                    f'{osp.relpath(full, ROOT)}')
    return None


@pytest.mark.parametrize('doc', DOCS, ids=IDS)
def test_relative_links_resolve(doc):
    bad = [f'line {n}: {why}' for n, target in links_of(doc)
           if (why := check_link(doc, target))]
    assert not bad, f'{osp.relpath(doc, ROOT)}:\n' + '\n'.join(bad)


def test_slug_rules():
    assert slug("The authors' published weights") == \
        'the-authors-published-weights'
    assert slug('`bench_deploy.py`: the fused form, PyTorch and onnxruntime') \
        == 'bench_deploypy-the-fused-form-pytorch-and-onnxruntime'
    assert slug('Fewer GPUs: accumulation, checkpointing') == \
        'fewer-gpus-accumulation-checkpointing'


# ----------------------------------------------------------------- commands
PYTHONS = re.compile(r'^(?:.*/)?python(?:3(?:\.\d+)?)?$')
SEPARATORS = {'&&', '||', ';', '|', '&'}
# Shell scripts that hand their extra arguments to a Python tool.
FORWARDS = {'tools/dist_train.sh': ('tools/train.py', 2),
            'tools/dist_test.sh': ('tools/test.py', 3),
            'tools/slurm_train.sh': ('tools/train.py', 4),
            'tools/slurm_test.sh': ('tools/test.py', 4)}


def bash_commands(path):
    """(line number, tokens) of every command of the file's ```bash blocks;
    continuation lines joined, comments dropped, split at ``&&``, ``;``,
    ``|``."""
    _, blocks = _split_fences(_read(path))
    for lang, first, lines in blocks:
        if lang not in ('bash', 'sh', 'shell'):
            continue
        logical, start = '', None
        for i, line in enumerate(lines):
            if start is None:
                start = first + 1 + i
            if line.rstrip().endswith('\\'):
                logical += line.rstrip()[:-1] + ' '
                continue
            logical += line
            try:
                tokens = shlex.split(logical, comments=True)
            except ValueError as e:
                raise AssertionError(
                    f'{osp.relpath(path, ROOT)}:{start}: cannot parse '
                    f'{logical!r} ({e})')
            command = []
            for tok in tokens + [';']:
                if tok in SEPARATORS:
                    if command:
                        yield start, command
                    command = []
                else:
                    command.append(tok)
            logical, start = '', None


def _flags(args):
    """The ``--flags`` of ``args``, up to ``--cfg-options``."""
    out = []
    for a in args:
        if a == '--cfg-options':
            break
        if a.startswith('--') and len(a) > 2:
            out.append(a.split('=', 1)[0])
    return out


def tool_calls(tokens):
    """What a command runs of the repository: ('python', script, flags),
    ('bash', script, flags for the tool it forwards to) and ('make',
    target, [])."""
    for i, tok in enumerate(tokens):
        if PYTHONS.match(tok) and i + 1 < len(tokens):
            script = tokens[i + 1]
            if script.endswith('.py') and not script.startswith('-'):
                yield 'python', script, _flags(tokens[i + 2:])
        elif tok in ('bash', 'sh') and i + 1 < len(tokens):
            script = tokens[i + 1]
            if script.endswith('.sh'):
                forwarded = FORWARDS.get(script)
                flags = _flags(tokens[i + 2 + forwarded[1]:]) \
                    if forwarded else []
                yield 'bash', script, flags
        elif tok == 'make' and all(re.match(r'^\w+=', t)
                                   for t in tokens[:i]):
            for target in tokens[i + 1:]:
                if not target.startswith('-') and '=' not in target:
                    yield 'make', target, []


@lru_cache(maxsize=None)
def make_targets():
    text = _read(osp.join(ROOT, 'Makefile'))
    return frozenset(m.group(1) for m in re.finditer(
        r'^([A-Za-z0-9_.-]+)\s*:(?!=)', text, re.M))


def _all_calls():
    for doc in DOCS:
        for n, tokens in bash_commands(doc):
            for call in tool_calls(tokens):
                yield doc, n, tokens, call


def _python_tools():
    tools = set()
    for _, _, _, (kind, script, _) in _all_calls():
        if kind == 'python' and osp.isfile(osp.join(ROOT, script)):
            tools.add(script)
        elif kind == 'bash' and script in FORWARDS:
            tools.add(FORWARDS[script][0])
    return sorted(tools)


# Runs each tool as ``python TOOL --help`` would (``__main__``, its folder
# first on sys.path), each in its own process: a fork of one interpreter
# that has imported torch and the OpenMMLab packages once, so that 20-odd
# tools cost seconds instead of 20-odd cold imports of torch.
HELP_DRIVER = r"""
import json, os, runpy, sys, traceback
for name in ('torch', 'torchvision', 'numpy', 'mmengine', 'mmengine.runner',
             'mmpretrain', 'mmpretrain.models', 'atomnas_mm'):
    try:
        __import__(name)
    except Exception:
        pass
out = {}
for script in json.loads(sys.argv[1]):
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        os.dup2(w, 2)
        sys.argv = [script, '--help']
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        code = 0
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(w)
    with os.fdopen(r, errors='replace') as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    out[script] = [os.waitstatus_to_exitcode(status), text]
print('\nHELP-JSON ' + json.dumps(out))
"""


@pytest.fixture(scope='session')
def help_texts():
    """``--help`` of every Python tool the docs run, once per tool."""
    tools = _python_tools()
    proc = subprocess.run(
        [sys.executable, '-c', HELP_DRIVER, json.dumps(tools)], cwd=ROOT,
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, COLUMNS='200', PYTHONWARNINGS='ignore'))
    marker = proc.stdout.rfind('HELP-JSON ')
    assert marker >= 0, f'the --help driver failed:\n{proc.stderr[-3000:]}'
    texts = json.loads(proc.stdout[marker + len('HELP-JSON '):])
    return {script: (rc, text) for script, (rc, text) in texts.items()}


def _flag_in_help(flag, text):
    return re.search(re.escape(flag) + r'(?![\w-])', text) is not None


@pytest.mark.parametrize('doc', DOCS, ids=IDS)
def test_commands_run_existing_tools(doc, help_texts):
    bad = []
    for n, tokens, (kind, script, flags) in (
            (n, t, c) for d, n, t, c in _all_calls() if d == doc):
        where = f'line {n}: {" ".join(tokens)}\n    '
        if kind == 'make':
            if script not in make_targets():
                bad.append(where + f'make {script}: no such Makefile target')
            continue
        if not osp.isfile(osp.join(ROOT, script)):
            bad.append(where + f'{script}: no such file')
            continue
        tool = script if kind == 'python' else FORWARDS.get(script, (None,))[0]
        if tool is None:
            continue
        rc, text = help_texts[tool]
        if rc != 0:
            bad.append(where + f'{tool} --help failed: {text[-300:]}')
            continue
        for flag in flags:
            if not _flag_in_help(flag, text):
                bad.append(where + f'{tool} has no option {flag}')
        for tok in tokens:
            if tok.startswith('configs/') and not osp.exists(
                    osp.join(ROOT, tok)):
                bad.append(where + f'{tok}: no such config')
    assert not bad, f'{osp.relpath(doc, ROOT)}:\n' + '\n'.join(bad)


def test_command_parsing():
    calls = list(tool_calls(shlex.split(
        'PYTHON=.venv/bin/python bash tools/dist_train.sh CFG 8 '
        '--auto-scale-lr --cfg-options a.b=1 --not-a-flag')))
    assert calls == [('bash', 'tools/dist_train.sh', ['--auto-scale-lr'])]
    calls = list(tool_calls(shlex.split(
        'flock /tmp/x .venv/bin/python benchmarks/bench_memory.py --quick')))
    assert calls == [('python', 'benchmarks/bench_memory.py', ['--quick'])]
    assert list(tool_calls(['make', 'demo'])) == [('make', 'demo', [])]
    assert list(tool_calls(['A=b', 'make', 'test'])) == [('make', 'test', [])]
    assert _flag_in_help('--out', '  --out OUT  file') and \
        not _flag_in_help('--out', '  --out-dir DIR')


# ------------------------------------------------------------------- prose
def test_readme_is_a_few_screens():
    size = os.path.getsize(osp.join(ROOT, 'README.md'))
    assert size <= README_LIMIT, \
        f'README.md is {size} bytes; move detail into docs/ (limit ' \
        f'{README_LIMIT})'


def test_readme_keeps_the_test_command():
    commands = [tokens for _, tokens in
                bash_commands(osp.join(ROOT, 'README.md'))]
    assert ['make', 'test'] in commands


PLANNING = re.compile(r'\bgoals?\b|\bissue [0-9]+', re.I)


@pytest.mark.parametrize(
    'doc', [d for d in DOCS if d == osp.join(ROOT, 'README.md') or
            d.startswith(osp.join(ROOT, 'docs') + os.sep)],
    ids=[i for i in IDS if i == 'README.md' or i.startswith('docs' + os.sep)])
def test_docs_describe_the_software(doc):
    bad = [f'line {n}: {line.strip()}'
           for n, line in enumerate(_read(doc).splitlines(), 1)
           if PLANNING.search(line)]
    assert not bad, f'{osp.relpath(doc, ROOT)}:\n' + '\n'.join(bad)
