"""What the evals services share: the two errors they raise besides a plain ``DomainError`` refusal."""

from __future__ import annotations

from evals.importing import ImportReport
from promptctl.errors import DomainError


class TestSetFileRefused(DomainError):
    """A test set file with bad lines; ``report`` holds every one of them."""

    __test__ = False

    def __init__(self, message: str, *, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


class UnitRetryLater(Exception):
    """A transient failure the task should retry after ``countdown`` seconds (not a refusal)."""

    def __init__(self, message: str, *, countdown: float) -> None:
        super().__init__(message)
        self.countdown = countdown
