"""``python -m cachestatus.cli``: the ``cachestatus`` command."""

from __future__ import annotations

if __name__ == "__main__":
    from . import run

    run()
