"""Store errors.

StoreError
├── DatabaseUnavailable  the database URL is wrong or the server cannot be reached
├── MigrationError       applying the migrations failed (the database is left as it was)
├── JobNotFound          no job has the given id
└── JobStateError        the job is not in a state that allows the change (e.g. finishing it twice)
    └── StaleAttempt     the news is from a run of the job that a newer run has replaced
"""

from __future__ import annotations

__all__ = [
    "DatabaseUnavailable",
    "JobNotFound",
    "JobStateError",
    "MigrationError",
    "StaleAttempt",
    "StoreError",
]


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class DatabaseUnavailable(StoreError):
    """The database could not be opened; the message names the URL (password hidden) and the fix."""


class MigrationError(StoreError):
    """Applying or reverting migrations failed; the transaction was rolled back."""


class JobNotFound(StoreError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"No job with id {job_id!r}; it may have been deleted.")


class JobStateError(StoreError):
    """The job's status does not allow the requested change."""

    def __init__(self, job_id: str, status: str, wanted: str) -> None:
        self.job_id = job_id
        self.status = status
        self.wanted = wanted
        super().__init__(f"Job {job_id} is {status}, so it cannot become {wanted}.")


class StaleAttempt(JobStateError):
    """News (a start, a result) from run `attempt` of a job whose latest run is `latest`: drop it."""

    def __init__(self, job_id: str, attempt: int, latest: int) -> None:
        super().__init__(job_id, f"on run {latest}", f"changed by run {attempt}")
        self.attempt = attempt
        self.latest = latest
