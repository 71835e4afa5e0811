"""The pure adaptive-scaling policy (`shoal.scheduler.adaptive`): no I/O."""

from __future__ import annotations

from shoal.scheduler.adaptive import adaptive_target, recommendations, workers_to_close


def test_target_nothing_pending_is_zero():
    assert adaptive_target(0, 1.0, 5.0, n_workers=3, total_threads=3) == 0


def test_target_from_work_and_duration():
    # 100 tasks of 1 s to finish in 5 s with 1-thread workers: 20 workers
    assert adaptive_target(100, 1.0, 5.0, n_workers=2, total_threads=2) == 20
    # with 2 threads per worker, half as many
    assert adaptive_target(100, 1.0, 5.0, n_workers=2, total_threads=4) == 10


def test_target_never_more_workers_than_tasks():
    assert adaptive_target(3, 100.0, 1.0, n_workers=1, total_threads=1) == 3


def test_target_at_least_one_while_pending_even_without_workers():
    assert adaptive_target(1, 0.001, 5.0, n_workers=0, total_threads=0) == 1
    assert adaptive_target(5, 0.0, 5.0, n_workers=0, total_threads=0) == 1


def test_target_doubles_under_memory_pressure():
    assert adaptive_target(0, 1.0, 5.0, n_workers=3, total_threads=3, memory_used=70, memory_limit=100) == 6
    assert adaptive_target(0, 1.0, 5.0, n_workers=3, total_threads=3, memory_used=50, memory_limit=100) == 0


def test_workers_to_close_only_idle_least_data_first():
    workers = [("a", 0, 500, 5), ("b", 2, 0, 0), ("c", 0, 10, 1), ("d", 0, 100, 2)]
    assert workers_to_close(workers, target=2) == ["c", "d"]
    assert workers_to_close(workers, target=0) == ["c", "d", "a"]  # "b" is busy
    assert workers_to_close(workers, target=4) == []


def test_workers_to_close_keeps_the_last_holder_of_data():
    assert workers_to_close([("a", 0, 10, 1), ("b", 0, 0, 0)], target=0) == ["b"]
    assert workers_to_close([("a", 0, 0, 0), ("b", 0, 0, 0)], target=0) == ["a", "b"]


def test_recommend_same_and_up_reset_counts():
    counts = {"x": 2}
    assert recommendations(2, {0, 1}, {0, 1}, {0, 1}, [], counts, 3) == {"status": "same"}
    assert counts == {}
    counts = {"x": 2}
    assert recommendations(4, {0, 1}, {0, 1}, {0, 1}, [], counts, 3) == {"status": "up", "n": 4}
    assert counts == {}


def test_recommend_down_only_after_wait_count():
    counts: dict = {}
    plan = {0, 1, 2}
    for _ in range(2):
        assert recommendations(1, plan, plan, plan, [2, 1], counts, 3) == {"status": "same"}
    assert counts == {2: 2, 1: 2}
    assert recommendations(1, plan, plan, plan, [2, 1], counts, 3) == {"status": "down", "workers": [2, 1]}


def test_recommend_down_counts_reset_when_worker_is_no_longer_a_candidate():
    counts: dict = {}
    plan = {0, 1, 2}
    recommendations(2, plan, plan, plan, [2], counts, 2)
    recommendations(2, plan, plan, plan, [1], counts, 2)  # 2 became busy: its count is dropped
    assert counts == {1: 1}
    assert recommendations(2, plan, plan, plan, [1], counts, 2) == {"status": "down", "workers": [1]}


def test_recommend_not_yet_arrived_workers_go_first():
    counts: dict = {}
    rec = recommendations(1, {0, 1, 2}, {0, 1, 2}, {0}, [0], counts, 1)
    assert rec == {"status": "down", "workers": [1, 2]}


def test_recommend_down_never_closes_more_than_needed():
    counts: dict = {}
    rec = recommendations(2, {0, 1, 2}, {0, 1, 2}, {0, 1, 2}, [0, 1, 2], counts, 1)
    assert rec == {"status": "down", "workers": [0]}
