"""Request bodies of the evals part of the change-control API (``evals.api``); same input rules as ``promptctl.schemas``.

A test set's file travels as text in ``content``: the request's size is capped
by ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 beyond it); the service checks every
line as ``promptctl testset import`` does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, ValidationInfo, field_validator

from promptctl.schemas import AGENT_NAME_MAX, _In

TESTSET_NAME_MAX = 100
TESTSET_CONTENT_MAX = 20_000_000  # PROMPTCTL_MAX_TESTSET_BYTES's default; the upload size limit usually binds first


class TestsetImportIn(_In):
    """A JSONL or CSV file's text, stored as the newest version of the test set ``name``."""

    name: StrictStr = Field(..., min_length=1, max_length=TESTSET_NAME_MAX)
    agent: StrictStr | None = Field(None, min_length=1, max_length=AGENT_NAME_MAX)
    gating: StrictBool = Field(False, description="make it the agent's gating set for promotions")
    format: Literal["jsonl", "csv"]
    content: StrictStr = Field(..., max_length=TESTSET_CONTENT_MAX)


class RunIn(_In):
    """Score a version on a test set in the background workers; answered at once with the queued run."""

    agent: StrictStr = Field(..., min_length=1, max_length=AGENT_NAME_MAX)
    version: StrictInt
    testset: StrictStr | None = Field(
        None, min_length=1, max_length=TESTSET_NAME_MAX, description="default: the agent's gating set"
    )
    repeats: StrictInt = Field(1, description="answers per ticket (1-20)")


class ComparisonIn(_In):
    """Compare two versions' latest finished runs, or two exact runs."""

    agent: StrictStr = Field(..., min_length=1, max_length=AGENT_NAME_MAX)
    baseline: StrictInt | None = None
    candidate: StrictInt | None = None
    testset: StrictStr | None = Field(None, min_length=1, max_length=TESTSET_NAME_MAX)
    baseline_run: StrictInt | None = None
    candidate_run: StrictInt | None = Field(None, validate_default=True)

    @field_validator("candidate_run", mode="after")
    @classmethod
    def _runs_or_versions(cls, value: int | None, info: ValidationInfo) -> int | None:
        given = info.data
        if given.get("baseline_run") is not None or value is not None:
            if given.get("baseline_run") is None or value is None:
                raise ValueError(
                    "give both baseline_run and candidate_run, or compare versions with baseline and candidate"
                )
        elif given.get("baseline") is None or given.get("candidate") is None:
            raise ValueError("give baseline and candidate (version numbers), or baseline_run and candidate_run")
        return value
