"""``python -m worker [--burst]``: the guarded arq worker (what ``campaigns worker`` runs)."""

from worker.settings import main

main()
