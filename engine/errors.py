"""Engine errors.

EngineError
├── ModelLoadError        the model could not be loaded (offline, missing folder, bad id)
│   └── CredentialsRejected  a hosted engine refused the API key at start (401/403)
├── GenerationError       a backend failed one job (the worker goes on)
│   ├── OutOfMemoryError  the device ran out of memory even with smaller batches
│   ├── ImageFlagged      the safety check flagged the picture a job starts from
│   └── PromptRefused     a hosted engine refused the prompt (content policy), in its own words
├── JobCancelled          the job was cancelled before it finished
│   └── JobInterrupted    the queue shut down first; the job may run again after a restart
├── QueueError            the queue refused a job
│   ├── QueueFull         the owner already has the maximum number of waiting jobs
│   └── QueueClosed       the queue is shutting down
└── QueueUnavailable      the remote queue's Redis cannot be used (bad URL, unreachable, too old)
"""

from __future__ import annotations

__all__ = [
    "CredentialsRejected",
    "EngineError",
    "GenerationError",
    "ImageFlagged",
    "JobCancelled",
    "JobInterrupted",
    "ModelLoadError",
    "OutOfMemoryError",
    "PromptRefused",
    "QueueClosed",
    "QueueError",
    "QueueFull",
    "QueueUnavailable",
]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelLoadError(EngineError):
    """The model could not be loaded; the message says how to fix the setting."""


class GenerationError(EngineError):
    """A backend failed one job; the message is fit to show the job's owner."""


class OutOfMemoryError(GenerationError):
    """The device ran out of memory even after retrying with smaller batches."""


class ImageFlagged(GenerationError):
    """The safety check flagged the picture an image prompt starts from, and the job was not allowed
    to start from a flagged picture (`GenerationRequest.allow_flagged_input`); nothing was made."""

    def __init__(
        self,
        message: str = "Your picture was flagged by this server's safety check, so nothing was made from it.",
    ) -> None:
        super().__init__(message)


class JobCancelled(EngineError):
    """The job was cancelled before it finished."""


class JobInterrupted(JobCancelled):
    """The queue shut down before the job finished; nobody cancelled it, so it may be run again."""


class QueueError(EngineError):
    """The queue refused a job."""


class QueueFull(QueueError):
    """The owner already has the maximum number of jobs waiting."""

    def __init__(self, owner: str, limit: int) -> None:
        self.owner = owner
        self.limit = limit
        super().__init__(
            f"You already have {limit} jobs waiting, the most allowed; "
            "wait for one to start or cancel one with /cancel."
        )


class QueueClosed(QueueError):
    """The queue is shutting down and takes no new jobs."""


class QueueUnavailable(EngineError):
    """The Redis server of `IMAGINE_QUEUE_URL` cannot be used; the message says why and what to do."""


class CredentialsRejected(ModelLoadError):
    """A hosted engine refused the bot's credentials (401/403) at start: a setting to fix."""


class PromptRefused(GenerationError):
    """A hosted engine refused the prompt under its content policy; `reason` is its own words."""

    def __init__(self, engine: str, reason: str) -> None:
        self.engine = engine
        self.reason = reason
        super().__init__(f"{engine} refused this prompt under its content policy: {reason}")
