"""bench_block.time_round_robin, which every benchmark and the latency
table time with."""
import os.path as osp
import sys

from tests.conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'benchmarks'))
from bench_block import time_round_robin  # noqa: E402


def test_warm_calls_run_each_candidate_right_before_its_timed_call():
    log = []
    cands = {n: (lambda n=n: log.append(n)) for n in 'abc'}
    times = time_round_robin(cands, reps=2, warmup=1)
    assert log == list('abc') + list('abc') + list('bca')
    assert {n: len(t) for n, t in times.items()} == dict(a=2, b=2, c=2)
    log.clear()
    time_round_robin(cands, reps=2, warmup=0, warm_calls=1)
    # Every timed call follows an untimed one of the same candidate.
    assert log == list('aabbcc') + list('bbccaa')
