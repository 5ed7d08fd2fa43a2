"""Leases enforced by the agent: a session of a key with the `lease` option leases the whole slave
or named resources (a VISA resource string, a serial port); sessions of other keys are refused with
the holder's name; leases end with their session (bye, expiry, a killed client) or their `for`;
an `admin` key can force a release and the former holder is told at its next request."""
import os
import re
import select
import subprocess
import time

import pytest

from conftest import Agent, Key, wait_until

HOST = os.uname().nodename
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH_YAML = os.path.join(ROOT, "notebooks", "instruments", "bench.yaml")
PSU = "TCPIP0::localhost::inst0::INSTR"
SINCE = r"since \d\d:\d\d"


@pytest.fixture
def lab(tmp_path):
    """An agent with alice (lease), bob (lease), carol (no option) and an admin key."""
    keys = {"alice": Key("lease", "alice@lab-pc"), "bob": Key("lease", "bob@lab-pc"),
            "carol": Key("", "carol@lab-pc"), "admin": Key("admin", "admin@lab")}
    agent = Agent(tmp_path / "agent", authorized=[k.line for k in keys.values()], extra=["--grace", "2"])
    clients = []

    def connect(name, **kwargs):
        clients.append(keys[name].client(agent, **kwargs))
        return clients[-1]

    yield agent, connect
    for c in clients:
        c.close()
    agent.stop()


def refused(reply):
    assert not reply["ok"], reply
    assert reply["e"]["code"] == "leased", reply
    return reply["e"]["msg"]


def test_a_lease_on_the_whole_slave_refuses_other_keys_sessions_and_ends_with_its_session(lab):
    """SHALL refuse hellos and requests of other keys while a key leases the whole slave."""
    agent, connect = lab
    bob = connect("bob")
    alice = connect("alice")
    taken = alice.ok("lease")
    assert [(l["resource"], l["shared"], l["until"]) for l in taken["leases"]] == [("", False, None)]
    message = refused(bob.request("import", name="os"))
    assert re.fullmatch(rf"\[splitbrain\.leased\] {re.escape(HOST)} is leased by alice@lab-pc \({SINCE}, while "
                        r"its session lasts\)", message), message
    refused(connect("bob", hello=False).request("hello", session="new"))
    assert alice.request("import", name="os")["ok"]  # the holder goes on
    listed = bob.ok("leases")  # anyone may ask who holds what
    assert [(l["resource"], l["holder"], l["mine"]) for l in listed] == [("", "alice@lab-pc", False)]
    assert alice.request("bye")["ok"]
    assert bob.request("import", name="os")["ok"]
    assert bob.ok("leases") == []


def test_a_lease_on_a_visa_resource_refuses_another_keys_open_resource(lab):
    """SHALL answer pyvisa's open_resource of a resource another key leased with leased."""
    agent, connect = lab
    alice, bob = connect("alice"), connect("bob")
    assert alice.ok("lease", resources=[PSU], **{"for": 7200})["leases"][0]["until"] is not None

    def open_psu(client):
        pyvisa = client.module("pyvisa")
        manager = client.value(pyvisa, BENCH_YAML + "@sim", path=["ResourceManager"])
        return client.call(manager, PSU, path=["open_resource"])

    message = refused(open_psu(bob))
    assert re.fullmatch(rf"\[splitbrain\.leased\] {re.escape(HOST)}:{re.escape(PSU)} is leased by alice@lab-pc "
                        rf"\({SINCE}, until \d\d:\d\d\)", message), message
    assert bob.request("import", name="os")["ok"]  # the rest of the slave is bob's to use
    assert open_psu(alice)["ok"]
    assert alice.ok("unlease", resources=[PSU]) == {"released": 1}
    assert open_psu(bob)["ok"]


def test_a_lease_on_a_serial_port_refuses_another_keys_serial_open(lab, tmp_path):
    """SHALL answer serial.Serial(port) of a port another key leased (by a link to it too) with leased."""
    agent, connect = lab
    process = subprocess.Popen(["socat", "-d", "-d", f"pty,raw,echo=0,link={tmp_path}/ttyV0",
                                f"pty,raw,echo=0,link={tmp_path}/ttyV1"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(tmp_path / "ttyV0"), 10, "socat's pty link")
        port = str(tmp_path / "ttyV0")
        alice, bob = connect("alice"), connect("bob")
        alice.ok("lease", resources=[os.path.realpath(port)])
        serial_ = bob.module("serial")
        message = refused(bob.call(serial_, port, path=["Serial"]))
        assert f"{HOST}:{os.path.realpath(port)} is leased by alice@lab-pc" in message
        opened = alice.call(alice.module("serial"), port, path=["Serial"])
        assert opened["ok"], opened
    finally:
        process.terminate()
        process.wait(5)


def test_a_key_without_the_lease_option_may_not_lease(lab):
    """SHALL refuse a lease to a key whose authorized_keys line lacks lease, with key_limit."""
    agent, connect = lab
    reply = connect("carol").request("lease")
    assert reply["e"]["code"] == "key_limit"
    assert reply["e"]["msg"] == (f"[splitbrain.key_limit] key carol@lab-pc may not take leases on {HOST}; the lab's "
                                 "admin can add the option lease (or admin) to its line in authorized_keys")
    agent.wait_for_log("refused a lease to carol@lab-pc")


def test_a_second_exclusive_lease_is_refused_and_shared_leases_coexist(lab):
    """SHALL refuse a lease another key holds, and let several keys share a shared one."""
    agent, connect = lab
    alice, bob = connect("alice"), connect("bob")
    alice.ok("lease", resources=[PSU])
    refused(bob.request("lease", resources=[PSU]))
    alice.ok("unlease")
    alice.ok("lease", resources=[PSU], shared=True)
    assert bob.ok("lease", resources=[PSU], shared=True)["leases"][0]["shared"] is True
    assert "is leased by alice@lab-pc (shared, since" in refused(connect("admin").request("lease", resources=[PSU]))
    assert len(alice.ok("leases")) == 2


def test_an_admin_forces_a_release_and_the_former_holder_is_told_at_its_next_request(lab):
    """SHALL let only an admin key force a release, and tell the former holder once."""
    agent, connect = lab
    alice, bob, admin = connect("alice"), connect("bob"), connect("admin")
    alice.ok("lease")
    assert bob.request("unlease", force=True)["e"]["code"] == "key_limit"
    assert admin.ok("unlease", force=True) == {"released": 1}
    message = refused(alice.request("import", name="os"))
    assert re.fullmatch(rf"\[splitbrain\.leased\] your lease on {re.escape(HOST)} was released by admin@lab at "
                        r"\d\d:\d\d; take it again when it is free", message), message
    assert alice.request("import", name="os")["ok"]  # told once
    assert bob.request("import", name="os")["ok"]
    agent.wait_for_log("force-released by admin@lab")


def test_a_lease_ends_after_its_for(lab):
    """SHALL end a lease at its `for`, while its session goes on."""
    agent, connect = lab
    alice, bob = connect("alice"), connect("bob")
    alice.ok("lease", **{"for": 1})
    refused(bob.request("import", name="os"))
    wait_until(lambda: bob.request("import", name="os")["ok"], 10, "the lease's end after 1 s")


def test_a_killed_clients_lease_ends_with_its_silent_session(lab):
    """SHALL free the slave once the holder's session expires (a killed kernel, a cancelled CI job)."""
    agent, connect = lab
    alice, bob = connect("alice"), connect("bob")
    alice.ok("lease")
    alice.close()  # gone without a bye: no more pings
    refused(bob.request("import", name="os"))
    # bob keeps its own session alive by asking; alice's expires after --grace 2.
    wait_until(lambda: bob.request("import", name="os")["ok"], 15, "the lease's end with alice's session")
    agent.wait_for_log("leases ended with their session")


def test_box_lease_from_python_is_a_context_manager_and_shows_in_slaves(tmp_path, monkeypatch):
    """SHALL take a lease with Slave.lease (with-block included), list it, and end it at the block's end."""
    monkeypatch.setenv("SPLITBRAIN_CONFIG", str(tmp_path / "config"))
    import splitbrain
    alice_public = splitbrain.client_keys()[0]
    bob = Key("lease", "bob@lab-pc")
    agent = Agent(tmp_path / "agent", authorized=[f"lease {alice_public}  # alice@lab-pc", bob.line])
    box = splitbrain.connect(f"{agent.address}?key={agent.public_key}", name="lease-box")
    other = bob.client(agent)
    try:
        with box.lease(PSU, for_="2h") as lease:
            assert re.fullmatch(r"<Lease on lease-box: TCPIP0::localhost::inst0::INSTR, until \d\d:\d\d>", repr(lease))
            assert [(l["resource"], l["holder"], l["mine"]) for l in box.leases()] == [(PSU, "alice@lab-pc", True)]
            row = next(r for r in splitbrain.slaves() if r["name"] == "lease-box")
            assert [l["holder"] for l in row["leases"]] == ["alice@lab-pc"]
            refused(other.request("lease", resources=[PSU]))
        assert box.leases() == []
        assert other.request("lease", resources=[PSU])["ok"]
        with pytest.raises(splitbrain.Leased) as caught:
            box.lease(PSU)
        assert "is leased by bob@lab-pc" in str(caught.value) and caught.value.code == "leased"
        with pytest.raises(ValueError):
            box.lease(PSU, for_="soon")
    finally:
        other.close()
        box.close()
        agent.stop()


def test_a_lease_on_a_configured_resource_name_covers_its_visa_string_and_its_serial_port(tmp_path):
    """SHALL (issue 13 point 1) let a lease name a resource the agent is configured with (--resource
    NAME=TARGET): another key's open of the name's VISA string or serial port is refused, naming both."""
    process = subprocess.Popen(["socat", "-d", "-d", f"pty,raw,echo=0,link={tmp_path}/ttyV0",
                                f"pty,raw,echo=0,link={tmp_path}/ttyV1"], stderr=subprocess.DEVNULL)
    keys = {"alice": Key("lease", "alice@lab-pc"), "bob": Key("lease", "bob@lab-pc")}
    agent = clients = None
    try:
        wait_until(lambda: os.path.exists(tmp_path / "ttyV0"), 10, "socat's pty link")
        port = os.path.realpath(tmp_path / "ttyV0")
        agent = Agent(tmp_path / "agent", authorized=[k.line for k in keys.values()],
                      extra=["--resource", f"psu={PSU}", f"--resource=dut-uart={port}"])
        clients = alice, bob = keys["alice"].client(agent), keys["bob"].client(agent)
        taken = alice.ok("lease", resources=["psu", "dut-uart"])
        assert [l["resource"] for l in taken["leases"]] == [PSU, port]
        assert [(l["resource"], l["name"]) for l in bob.ok("leases")] == [(PSU, "psu"), (port, "dut-uart")]

        pyvisa = bob.module("pyvisa")
        manager = bob.value(pyvisa, BENCH_YAML + "@sim", path=["ResourceManager"])
        message = refused(bob.call(manager, PSU, path=["open_resource"]))
        assert re.fullmatch(rf"\[splitbrain\.leased\] {re.escape(HOST)}:psu \({re.escape(PSU)}\) is leased by "
                            rf"alice@lab-pc \({SINCE}, while its session lasts\)", message), message
        message = refused(bob.call(bob.module("serial"), str(tmp_path / "ttyV0"), path=["Serial"]))
        assert f"{HOST}:dut-uart ({port}) is leased by alice@lab-pc" in message
        # The name and its target are one resource: a lease on the VISA string itself is refused too.
        assert "psu (" in refused(bob.request("lease", resources=[PSU]))
        assert alice.call(alice.module("serial"), port, path=["Serial"])["ok"]
        assert alice.ok("unlease", resources=["psu"]) == {"released": 1}
        assert bob.call(manager, PSU, path=["open_resource"])["ok"]
    finally:
        for c in clients or ():
            c.close()
        if agent is not None:
            agent.stop()
        process.terminate()
        process.wait(5)


def test_a_port_opened_before_another_keys_lease_stays_usable_and_a_new_open_is_refused(lab, tmp_path):
    """SHALL (issue 13 point 1, decided: leases govern opens) leave an object opened before another
    key's lease usable, and refuse that key's next open of the resource with leased."""
    agent, connect = lab
    process = subprocess.Popen(["socat", "-d", "-d", f"pty,raw,echo=0,link={tmp_path}/ttyV0",
                                f"pty,raw,echo=0,link={tmp_path}/ttyV1"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(tmp_path / "ttyV1"), 10, "socat's pty links")
        port = str(tmp_path / "ttyV0")
        alice, bob = connect("alice"), connect("bob")
        far_end = os.open(tmp_path / "ttyV1", os.O_RDONLY | os.O_NOCTTY)
        try:
            opened = bob.value(bob.module("serial"), port, path=["Serial"])
            alice.ok("lease", resources=[os.path.realpath(port)])
            written = bob.call(opened, b"still bob's\n", path=["write"])
            assert written["ok"] and written["r"] == 12, written
            got = b""
            while len(got) < 12 and select.select([far_end], [], [], 10)[0]:
                got += os.read(far_end, 12 - len(got))
            assert got == b"still bob's\n"
        finally:
            os.close(far_end)
        message = refused(bob.call(bob.module("serial"), port, path=["Serial"]))
        assert f"{HOST}:{os.path.realpath(port)} is leased by alice@lab-pc" in message
    finally:
        process.terminate()
        process.wait(5)


def test_open_by_a_link_to_a_leased_port_is_refused_and_other_files_open_before_during_and_after(lab, tmp_path):
    """SHALL refuse another key's open() of a leased port by a link to it, and open every other file:
    while nothing is leased the guard does not resolve paths (only the lease file is looked at), so a
    lease taken after those opens must still be seen at the next one."""
    agent, connect = lab
    process = subprocess.Popen(["socat", "-d", "-d", f"pty,raw,echo=0,link={tmp_path}/ttyV0",
                                f"pty,raw,echo=0,link={tmp_path}/ttyV1"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: os.path.exists(tmp_path / "ttyV0"), 10, "socat's pty link")
        link, port = str(tmp_path / "ttyV0"), os.path.realpath(tmp_path / "ttyV0")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        alice, bob = connect("alice"), connect("bob")
        builtins = bob.module("builtins")

        def bob_opens(path, mode="r"):
            return bob.call(builtins, path, mode, path=["open"])

        assert bob_opens(str(plain))["ok"]
        assert bob_opens(link, "rb")["ok"]        # nothing leased yet
        alice.ok("lease", resources=[port])
        message = refused(bob_opens(link, "rb"))  # the lease taken since is seen
        assert f"{HOST}:{port} is leased by alice@lab-pc" in message
        refused(bob_opens(port, "rb"))
        assert bob_opens(str(plain))["ok"]
        assert bob_opens(str(tmp_path / "new.txt"), "w")["ok"]
        assert alice.call(alice.module("builtins"), link, "rb", path=["open"])["ok"]  # the holder's own
        assert alice.ok("unlease", resources=[port]) == {"released": 1}
        assert bob_opens(link, "rb")["ok"]
    finally:
        process.terminate()
        process.wait(5)
