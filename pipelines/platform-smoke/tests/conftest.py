import sys
from pathlib import Path

# The pipeline is not installed in the project's venv; its tests use its source.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
