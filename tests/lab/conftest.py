import pathlib
import sys

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
# The notebooks import `instruments.bench` from their own folder; the tests do the same.
sys.path.insert(0, str(NOTEBOOKS))
