"""Whether a process still runs: how leftovers of killed writers and runs are told from live ones."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True for this process and any running one (also one of another user); False for no such process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
