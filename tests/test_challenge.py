"""The challenge machine's attempt accounting on its own, as factor enrolment will use it (no challenge, no HTTP):
per-scope attempts, the per-subject window, the consecutive-failure lock, and a success clearing the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FakeClock
from stepup_bff.errors import InvalidCode, StepUpBlocked, StepUpLocked
from stepup_bff.settings import StepUpSettings
from stepup_bff.stepup.challenge import Attempts
from stepup_bff.storage import SqliteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SqliteStore:
    return SqliteStore(tmp_path / "s.sqlite3", clock)


async def test_attempts_per_scope_then_discard(store: SqliteStore) -> None:
    attempts = Attempts(StepUpSettings(max_attempts=3), store)
    verdicts = [await attempts.wrong("user-1", "enrolment-1") for _ in range(3)]
    assert [verdict.error.extra["attempts_remaining"] for verdict in verdicts] == [2, 1, 0]
    assert all(isinstance(verdict.error, InvalidCode) for verdict in verdicts)
    assert [verdict.discard for verdict in verdicts] == [False, False, True]
    # A new scope (a new enrolment or challenge) has its own attempts, but the subject's window goes on.
    assert (await attempts.wrong("user-1", "enrolment-2")).error.extra["attempts_remaining"] == 2


async def test_the_subjects_window_blocks_every_scope_until_it_ends(store: SqliteStore, clock: FakeClock) -> None:
    attempts = Attempts(StepUpSettings(max_failures=2, failure_window=60), store)
    await attempts.wrong("user-1", "a")
    blocked = await attempts.wrong("user-1", "b")
    assert isinstance(blocked.error, StepUpBlocked) and blocked.discard
    with pytest.raises(StepUpBlocked) as refused:
        await attempts.refuse_if_blocked("user-1")
    assert refused.value.extra["retry_after"] == 60
    await attempts.refuse_if_blocked("user-2")  # nobody else
    clock.advance(60)
    await attempts.refuse_if_blocked("user-1")


async def test_consecutive_failures_lock_until_a_success(store: SqliteStore, clock: FakeClock) -> None:
    attempts = Attempts(StepUpSettings(max_failures=10, failure_window=60, max_consecutive_failures=3), store)
    for _ in range(2):
        await attempts.wrong("user-1", "a")
    await attempts.succeeded("user-1")  # the run starts again
    for _ in range(2):
        await attempts.wrong("user-1", "b")
    clock.advance(3600)  # the window has long passed; the run has not
    locked = await attempts.wrong("user-1", "c")
    assert isinstance(locked.error, StepUpLocked) and locked.discard
    with pytest.raises(StepUpLocked):
        await attempts.refuse_if_blocked("user-1")
