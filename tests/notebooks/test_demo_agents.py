"""scripts/demo_agents.py, as `make lab` runs it: the demo agents' registry entries go when it ends
(issue 12: bench-a and bench-b stayed in the user's registry, pointing at dead ports)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_AGENTS = os.path.join(ROOT, "scripts", "demo_agents.py")

# Run while the agents are up: prints the registry as the lab's kernels would read it.
SHOW_REGISTRY = "import splitbrain._registry as r, json; print(json.dumps(r.entries()))"


def _registry(config):
    path = config / "slaves.json"
    return json.loads(path.read_text())["slaves"] if path.exists() else {}


def _run_demo(tmp_path, config):
    env = dict(os.environ, SPLITBRAIN_CONFIG=str(config))
    done = subprocess.run([sys.executable, DEMO_AGENTS, "--state", str(tmp_path / "state"), "bench-a", "bench-b",
                           "--", sys.executable, "-c", SHOW_REGISTRY],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_issue_12_the_demo_agents_entries_are_removed_when_the_lab_stops(tmp_path):
    config = tmp_path / "config"
    during = _run_demo(tmp_path, config)
    # SHALL register both while the command runs ...
    assert sorted(during) == ["bench-a", "bench-b"]
    assert all(e["address"].startswith("tcp://127.0.0.1:") for e in during.values())
    # ... and leave no entry behind once it has ended
    assert _registry(config) == {}


def test_issue_12_the_users_own_entries_under_those_names_are_restored(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    mine = {"bench-a": {"address": "tcp://10.0.0.7:7780", "public_key": None},
            "scope": {"address": "tcp://10.0.0.8:7780", "public_key": None}}
    (config / "slaves.json").write_text(json.dumps({"slaves": mine}))
    during = _run_demo(tmp_path, config)
    assert during["bench-a"]["address"].startswith("tcp://127.0.0.1:"), during
    assert during["scope"] == mine["scope"]
    # SHALL put back what the user had: their bench-a, their other entry, and no bench-b
    assert _registry(config) == mine
