"""Where things are, for tests anywhere in the tree."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
FLOWS = REPO / "flows"
