"""arq glue: job functions and ``WorkerSettings``. All logic lives in ``campaigns``."""

from worker.settings import WorkerSettings

__all__ = ["WorkerSettings"]
