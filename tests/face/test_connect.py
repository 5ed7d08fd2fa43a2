"""connect() sends the session's first import (os, which routing itself needs) right behind its hello
(issue 11 point 4): one round trip for both. What the user sees is what it was: a refused hello raises
its own error at connect, and a module the key may not use is refused at its first use, not before."""
import os

import pytest

import splitbrain
from splitbrain import _spawn


def test_connect_brings_the_first_import_with_its_hello_in_one_round_trip(tmp_path):
    with _spawn.Agent(tmp_path / "agent", authorized=[splitbrain.client_keys()[0]]) as agent:
        box = splitbrain.connect(str(agent.connection_file), name="prefetching")
        try:
            assert box.round_trips == 1 and box.requests == 2  # the hello and the import, sent at once
            assert box.modules.os.sep == "/"
            assert box.round_trips == 1
            with box:
                cwd = os.getcwd()
            assert cwd == box.modules.os.getcwd() and box.round_trips == 3
            assert box.stats()["objects"] == 1  # the os module, held for the routed one
        finally:
            box.close()


def _agent_with(tmp_path, options):
    return _spawn.Agent(tmp_path / "agent", authorized=[f"{options} {splitbrain.client_keys()[0]}  # alice@lab-pc"])


def test_a_refused_hello_still_raises_its_own_error_at_connect(tmp_path):
    with _agent_with(tmp_path, "max-sessions=1") as agent:
        first = splitbrain.connect(str(agent.connection_file), name="first")
        try:
            with pytest.raises(splitbrain.ProtocolError, match=r"^\[splitbrain\.too_many_sessions\] key alice@lab-pc "
                                                               r"already has 1 sessions on "):
                splitbrain.connect(str(agent.connection_file), name="second")
        finally:
            first.close()
        log = (tmp_path / "agent" / "agent.log").read_text()
        assert log.count("opened (worker pid") == 1, log  # the refused one took no worker


def test_an_expired_key_is_refused_at_connect_with_key_limit(tmp_path):
    with _agent_with(tmp_path, 'expires="2020-01-31"') as agent:
        with pytest.raises(splitbrain.KeyLimit, match=r"^\[splitbrain\.key_limit\] key alice@lab-pc expired on "
                                                      r"2020-01-31 00:00 UTC"):
            splitbrain.connect(str(agent.connection_file), name="expired")


def test_a_module_the_key_may_not_use_is_refused_at_its_first_use_not_at_connect(tmp_path):
    with _agent_with(tmp_path, 'allow-modules="subprocess,builtins"') as agent:
        box = splitbrain.connect(str(agent.connection_file), name="no-os")
        try:
            with pytest.raises(splitbrain.ModuleRefused, match=r"^\[splitbrain\.module_refused\] .*\bos\b"):
                box.modules.os.getcwd()
            assert box.modules.subprocess.DEVNULL == -3
        finally:
            box.close()
