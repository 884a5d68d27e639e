"""The demo: the same numbers whatever the caller's thread count, and a line per seed on a plain stream."""

import contextlib
import io
import re

import pytest
import torch
from threadpoolctl import threadpool_limits

from nnlift.reproduce.demo import DemoConfig, run

# Large enough for torch's parallel reductions to split the rows: run on 1 and on 2 threads, both test errors
# differ (NN-LIFT 0.00234147865 vs 0.00234147864) unless the demo fixes the count.
TINY = DemoConfig(seeds=[0], d=5, k=2, n=40_000, n_test=1000, max_rows=40_000, max_iter=20)


def _run_on(threads, verbose=0):
    """The demo run by a caller whose torch and BLAS/OpenMP pools have `threads` threads; and its stderr."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    stderr = io.StringIO()
    try:
        with threadpool_limits(threads), contextlib.redirect_stderr(stderr):
            result = run(TINY, verbose=verbose)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)
    return result, stderr.getvalue()


def _numbers(result):
    return [{method: {key: value for key, value in row[method].items() if key != "seconds"}
             for method in ("nnlift", "backprop")} for row in result["seeds"]]


@pytest.fixture(scope="module")
def on_one_thread():
    return _run_on(1, verbose=1)


def test_numbers_are_identical_on_one_and_two_threads_and_the_json_says_what_was_fixed(on_one_thread):
    one, _ = on_one_thread
    two, _ = _run_on(2)
    assert _numbers(one) == _numbers(two)
    assert one["config"]["threads"] == 1


def test_plain_stream_gets_a_line_per_seed_in_words_and_the_success_counts(on_one_thread):
    result, stderr = on_one_thread
    lift, back = result["seeds"][0]["nnlift"], result["seeds"][0]["backprop"]
    reached = {True: "noise floor reached", False: "not reached"}
    seed_line = (rf"\d\d:\d\d:\d\d seed 0 \(1 of 1\): NN-LIFT test MSE {lift['test_mse']:.3g} "
                 rf"\({reached[lift['success']]}\), backprop {back['test_mse']:.3g} "
                 rf"\({'reached' if back['success'] else 'not reached'}\), \d+\.\d s")
    assert re.search(seed_line, stderr)
    assert (f"NN-LIFT vs backprop: noise floor reached by NN-LIFT on {int(lift['success'])} of 1 seeds, by "
            f"backprop on {int(back['success'])} (") in stderr
