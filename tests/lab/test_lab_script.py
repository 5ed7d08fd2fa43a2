"""`make lab`'s script, scripts/lab.sh, as a user runs it with options of their own: JupyterLab
options given to it replace its defaults instead of clashing with them ("root_dir only accepts one
value"), and saving a notebook writes no checkpoint into the served folder (the repository's
notebooks/ for `make lab`): checkpoints go to the demo state directory."""
import json
import os
import pathlib
import secrets
import signal
import subprocess
import urllib.request

from deadline import wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAB_SH = ROOT / "scripts" / "lab.sh"


def api(url, token, path, method="GET", body=None):
    request = urllib.request.Request(f"{url}{path}?token={token}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def test_lab_sh_passes_the_users_options_through_and_keeps_checkpoints_out_of_the_served_folder(tmp_path):
    served = tmp_path / "my-notebooks"
    served.mkdir()
    state = tmp_path / "state"
    runtime = tmp_path / "runtime"
    token = secrets.token_hex(8)
    env = dict(os.environ, SPLITBRAIN_DEMO_STATE=str(state), SPLITBRAIN_CONFIG=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), JUPYTER_PLATFORM_DIRS="1")
    log = open(tmp_path / "lab.log", "wb")
    process = subprocess.Popen([str(LAB_SH), f"--ServerApp.root_dir={served}", "--port=0",
                                f"--IdentityProvider.token={token}", "--LabApp.news_url=None"],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)

    def server_info():
        assert process.poll() is None, (tmp_path / "lab.log").read_text(errors="replace")[-3000:]
        for path in runtime.glob("jpserver-*.json"):
            try:
                return json.loads(path.read_text())
            except ValueError:
                pass
        return None

    try:
        info = wait_until(server_info, 90, "JupyterLab started by scripts/lab.sh")
        assert pathlib.Path(info["root_dir"]) == served  # ours replaced, no clash
        url = info["url"].rstrip("/")

        def answers():
            try:
                return api(url, token, "/api/status") is not None
            except OSError:
                return False
        wait_until(answers, 60, "JupyterLab answering /api/status")
        api(url, token, "/api/contents/probe.ipynb", "PUT", {"type": "notebook", "content": {
            "nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}})
        api(url, token, "/api/contents/probe.ipynb/checkpoints", "POST")
        assert list(served.rglob("*checkpoint*")) == []
        assert list(state.rglob("probe-checkpoint.ipynb")), "the checkpoint went to the state directory"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)
        log.close()
