"""Where the build tree is, for bench/face's scripts run by hand (`.venv/bin/python bench/face/X.py`):
its Python package and bench/wire's helpers on sys.path, and its agent as SPLITBRAIN_AGENT, as run.sh
sets them (from SPLITBRAIN_BUILD_DIR, else build/). Import it before splitbrain."""
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("SPLITBRAIN_BUILD_DIR", ROOT / "build"))
sys.path.insert(0, str(BUILD / "python"))
sys.path.insert(0, str(ROOT / "bench" / "wire"))
os.environ.setdefault("SPLITBRAIN_AGENT", str(BUILD / "agent" / "splitbrain-agent"))
