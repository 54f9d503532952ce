"""The public names of the package stay what docs/python-api.md says, whatever was imported."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import cachestatus


def test_every_public_function_stays_callable_after_every_submodule_is_imported():
    """Importing a submodule must never replace a function of the API by a module of the same
    name (``cachestatus.verify`` and ``cachestatus.missing`` once did)."""
    for module in pkgutil.walk_packages(cachestatus.__path__, "cachestatus."):
        importlib.import_module(module.name)
    for name in ("rebuild", "report", "missing", "verify", "delete", "summary", "open_cache"):
        assert callable(getattr(cachestatus, name)), name
        assert not isinstance(getattr(cachestatus, name), type(cachestatus)), name


def test_in_a_fresh_process_too():
    code = (
        "import cachestatus, cachestatus.operations;"
        "assert callable(cachestatus.verify) and callable(cachestatus.missing)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
