from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent))

from tests.helpers import copy_sample


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A writable copy of Esri's sample Compact V2 cache."""
    return copy_sample(tmp_path / "sample_cache")
