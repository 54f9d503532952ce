"""``python -m cachestatus.cli``: the ``cachestatus`` command."""

from __future__ import annotations

if __name__ == "__main__":
    from . import run_as_program

    run_as_program()  # before the imports of the commands, which take a while
    from .group import main

    main()
