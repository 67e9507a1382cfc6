"""``python -m tests.worker_main CLASS``: a test seam run as ``campaigns worker`` runs.

``CLASS`` names a seam's settings for the dispatch worker (``tests/support.arq_settings``
over ``WorkerSettings`` with its own ``on_startup``), such as
``tests.chaos.faults.KillAfterSend``. Both workers run in one process
(``worker.settings.run_workers``), the settlement worker with the seam's
``on_startup`` too, so a seam that changes the provider or the clock changes
them for both, and a SIGKILL the seam sends ends both, as in production.
"""

from __future__ import annotations

import importlib
import sys

from campaigns.logs import configure_logging
from campaigns.settings import Settings
from tests.support import arq_settings
from worker.settings import SettlementSettings, run_workers

__all__ = ["main"]


def main(argv: list[str]) -> None:
    if len(argv) != 1 or "." not in argv[0]:
        print("usage: python -m tests.worker_main MODULE.SETTINGS", file=sys.stderr)
        raise SystemExit(2)
    module, _, name = argv[0].rpartition(".")
    dispatch = getattr(importlib.import_module(module), name)
    settlement = arq_settings(SettlementSettings, on_startup=dispatch["on_startup"])
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, stream=sys.stdout)
    run_workers(dispatch, settlement)


if __name__ == "__main__":
    main(sys.argv[1:])
