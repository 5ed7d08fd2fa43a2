"""Completion and inspection answer for the slave (issue 12): `os.getcwd?` and Shift+Tab show the
remote function's signature and docstring, path completion in a `%%slave` cell lists the slave's
files, and `%slave connect <Tab>` completes registry names and connection files."""
import json
import re

import pytest

from conftest import stdout


def _complete(kernel, code):
    msg_id = kernel.kc.complete(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]["matches"]


def _inspect(kernel, code):
    msg_id = kernel.kc.inspect(code, len(code))
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "ok" and reply["content"]["found"], reply["content"]
    return re.sub(r"\x1b\[[0-9;]*m", "", reply["content"]["data"]["text/plain"])


@pytest.fixture(scope="module")
def probe(kernel):
    """A function only box-a's os module has, with a signature and docstring of its own."""
    source = ("import os\ndef slave_only_probe(alpha, beta=2, *, gamma='g'):\n"
              "    'Only box-a documents this probe.'\nos.slave_only_probe = slave_only_probe")
    kernel.ok("import splitbrain")
    kernel.ok(f"%%slave box-a\nsplitbrain.current().modules.builtins.exec({source!r}, {{}})")
    return "os.slave_only_probe(alpha, beta=2, *, gamma='g')"


def test_question_mark_shows_the_remote_functions_signature_and_docstring(kernel, probe):
    msg_id = kernel.kc.execute("%%slave box-a\nos.slave_only_probe?")
    reply = kernel.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"
    pages = [p["data"]["text/plain"] for p in reply["content"].get("payload", []) if p.get("source") == "page"]
    assert pages, reply["content"]
    text = re.sub(r"\x1b\[[0-9;]*m", "", pages[0])
    assert f"Signature: {probe}" in text, text
    assert "Only box-a documents this probe." in text and "(on box-a)" in text, text
    # SHALL NOT describe the proxy
    assert "RemoteMethod" not in text and "*args" not in text, text


def test_shift_tab_shows_the_remote_signature_of_a_builtin(kernel, probe):
    text = _inspect(kernel, "%%slave box-a\nos.getcwd")
    assert "Signature: os.getcwd()" in text and "builtin_function_or_method (on box-a)" in text, text
    assert "RemoteMethod" not in text and "*args" not in text, text
    text = _inspect(kernel, "%%slave box-a\nos.slave_only_probe")
    assert f"Signature: {probe}" in text and "Only box-a documents this probe." in text, text


def test_path_completion_in_a_slave_cell_lists_the_slaves_files(kernel):
    kernel.ok("%%slave box-a\nimport tempfile\nremote_dir = tempfile.mkdtemp()\nos.chdir(remote_dir)\n"
              "os.mkdir('only_here_dir')\nopen('only_here_file.txt', 'w').close()")
    matches = _complete(kernel, "%%slave box-a\nopen('only_here")
    assert "only_here_file.txt" in matches and "only_here_dir/" in matches, matches
    # the master's cwd has neither
    local = _complete(kernel, "open('only_here")
    assert not any(m.startswith("only_here") for m in local), local


def test_slave_connect_completes_registry_names_then_connection_files(kernel, tmp_path):
    names = _complete(kernel, "%slave connect ")
    assert "box-a" in names and "box-b" in names, names
    (tmp_path / "connection.json").write_text(json.dumps({"address": "tcp://127.0.0.1:1", "public_key": None}))
    (tmp_path / "notes.txt").write_text("")
    matches = _complete(kernel, f"%slave connect box-z {tmp_path}/")
    # SHALL offer the connection file (and not what Jedi reads as a division: `x/callable`)
    assert matches == [f"{tmp_path}/connection.json"], matches
    assert _complete(kernel, "%slave forget box-") == ["box-a", "box-b"]


def test_a_sticky_slave_completes_the_slaves_paths_too(kernel):
    kernel.ok("import splitbrain\n%slave box-a")
    try:
        matches = _complete(kernel, "open('only_here_f")
        assert matches == ["only_here_file.txt"], matches
    finally:
        kernel.ok("%slave local")
    assert stdout(kernel.ok("print(splitbrain.current())")) == "None\n"


def test_inspecting_a_remote_object_names_its_remote_type(kernel):
    kernel.ok("%%slave box-a\nremote_file = open('/etc/hostname')")
    try:
        text = _inspect(kernel, "remote_file")
        assert "TextIOWrapper (on box-a)" in text and "<remote box-a:" in text, text
        assert "RemoteObject" not in text, text
    finally:
        kernel.ok("remote_file.close()")
