"""The shared session budget: never more than ``budget`` starts in any window, across processes."""

import multiprocessing
import time

import pytest

from managed_agents import ratelimit
from managed_agents.ratelimit import Budget, FileLimiter, RedisLimiter, gcra_reserve


def _max_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    best = 0
    left = 0
    for right, start in enumerate(starts):
        while start - starts[left] >= window - 1e-9:
            left += 1
        best = max(best, right - left + 1)
    return best


def test_gcra_allows_the_burst_at_once_then_spaces_evenly():
    budget = Budget(budget=300, window=60.0, burst=20)
    assert budget.interval == pytest.approx(60 / 280)
    tat, now, starts = 0.0, 1000.0, []
    for _ in range(600):
        wait, tat = gcra_reserve(stored_tat=tat, now=now, budget=budget)
        starts.append(now + wait)
    assert starts[:20] == [now] * 20
    assert starts[20] - now == pytest.approx(budget.interval)
    assert _max_in_window(starts, 60.0) <= 300
    # 600 starts take 580 intervals: about 124 s, within 10% of the 120 s floor.
    assert starts[-1] - now == pytest.approx(580 * 60 / 280)


def test_the_margin_keeps_late_requests_inside_the_budget():
    budget = Budget(budget=300, window=60.0, burst=20, margin=1.0)
    tat, now, starts = 0.0, 0.0, []
    for index in range(900):
        wait, tat = gcra_reserve(stored_tat=tat, now=now, budget=budget)
        # Every fifth request reaches the server a whole second after its slot.
        starts.append(now + wait + (1.0 if index % 5 == 0 else 0.0))
    assert _max_in_window(starts, 60.0) <= 300
    assert starts[599] <= 132  # still within 10% of the 120 s floor


def test_budget_refuses_impossible_values():
    with pytest.raises(ValueError):
        Budget(budget=10, window=60, burst=10)
    with pytest.raises(ValueError):
        Budget(budget=0, window=60, burst=1)


def _reserve_many(directory: str, count: int, queue) -> None:
    from pathlib import Path

    limiter = FileLimiter(directory=Path(directory), key="test", budget=Budget(budget=10, window=1.0, burst=3))
    for _ in range(count):
        wait = limiter.reserve()
        queue.put(time.time() + wait)


def test_file_limiter_is_shared_between_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_reserve_many, args=(str(tmp_path), 6, queue)) for _ in range(4)]
    for process in processes:
        process.start()
    starts = [queue.get(timeout=30) for _ in range(24)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert _max_in_window(starts, 1.0) <= 10
    # 24 starts at 10 per second with a burst of 3 need (24 - 3) / 7 = 3 s: the processes did wait.
    assert max(starts) - min(starts) == pytest.approx(21 / 7, abs=0.3)


@pytest.mark.redis
def test_redis_limiter_shares_one_budget(settings):
    budget = Budget(budget=10, window=1.0, burst=3)
    first = RedisLimiter(url=settings.CELERY_BROKER_URL, key="test-shared", budget=budget)
    second = RedisLimiter(url=settings.CELERY_BROKER_URL, key="test-shared", budget=budget)
    first.reset()
    waits = [(first if index % 2 else second).reserve() for index in range(10)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(1 / 7, abs=0.02)
    assert waits[9] == pytest.approx(7 / 7, abs=0.05)
    first.reset()


def test_limiter_choice_follows_the_broker(settings, tmp_path):
    settings.PROMPTCTL_RATE_LIMITER = "auto"
    settings.PROMPTCTL_RATE_LIMIT_REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    settings.CELERY_BROKER_URL = "filesystem://"
    assert ratelimit.limiter_for().kind == "file"
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/12"
    assert ratelimit.limiter_for().kind == "redis"
    settings.PROMPTCTL_RATE_LIMITER = "bogus"
    with pytest.raises(ValueError):
        ratelimit.limiter_for()
