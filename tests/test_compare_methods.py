"""benchmarks/compare_methods.py --jobs: CPU groups, runs at once on disjoint groups, a pinned child."""

import os
import sys
import threading

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

from compare_methods import cpu_groups, run_all, run_pinned  # noqa: E402


def test_cpus_split_into_consecutive_groups_of_near_equal_size():
    assert cpu_groups(3, set(range(8))) == [{0, 1, 2}, {3, 4, 5}, {6, 7}]
    assert cpu_groups(2, {4, 9, 5, 12}) == [{4, 5}, {9, 12}]
    assert cpu_groups(1, {3}) == [{3}]


@pytest.mark.parametrize("jobs", [0, 3])
def test_more_jobs_than_cpus_is_one_clear_sentence(jobs):
    with pytest.raises(SystemExit, match=rf"--jobs={jobs} must be between 1 and the 2 CPUs this process may use\."):
        cpu_groups(jobs, {0, 1})


def test_runs_go_three_at_a_time_on_disjoint_groups_and_return_in_order():
    groups = [{0}, {1, 2}, {3}]
    together = threading.Barrier(3, timeout=20)  # the first three runs must be in flight at the same time
    lock, in_use, seen = threading.Lock(), [], []

    def runner(index, name, cpus):
        with lock:
            assert all(not (cpus & other) for other in in_use), (cpus, in_use)
            in_use.append(cpus)
            seen.append(frozenset(cpus))
        if index < 3:
            together.wait()
        with lock:
            in_use.remove(cpus)
        return f"{name}:{index}"

    tasks = [(i, f"run{i}") for i in range(7)]
    assert run_all(tasks, 3, runner, groups) == [f"run{i}:{i}" for i in range(7)]
    assert len(seen) == 7 and set(seen) == {frozenset(g) for g in groups}


def test_one_job_runs_in_order_without_pinning():
    assert run_all([(1,), (2,)], 1, lambda x: x * 10) == [10, 20]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one of them")
def test_the_child_runs_on_its_group_only_and_logs_its_stderr(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    # The child waits before reading its affinity: the parent pins it just after it starts.
    code = "import os, sys, time; time.sleep(1.0); print(sorted(os.sched_getaffinity(0)), file=sys.stderr); sys.exit(3)"
    log = tmp_path / "runs" / "clip_seed0.log"
    assert run_pinned([sys.executable, "-c", code], {cpu}, str(log)) == 3
    assert log.read_text().strip() == str([cpu])
