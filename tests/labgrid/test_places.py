"""labgrid places (docs/labgrid.md, issue 13 point 4), against a real labgrid-coordinator and
labgrid-exporter on loopback ports: the exporter publishes a splitbrain agent as the place's
NetworkService, and `connect("place:bench-3")` reserves, acquires, connects and releases; the agent
(`--labgrid-place bench-3`) refuses a session whose labgrid user does not hold the place."""
import asyncio
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
import zmq

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from deadline import wait_until  # noqa: E402

labgrid_client = pytest.importorskip("labgrid.remote.client", reason="labgrid is not installed in the venv "
                                                                      "(scripts/setup.sh installs it)")
import splitbrain  # noqa: E402
from splitbrain import _spawn  # noqa: E402

VENV_BIN = pathlib.Path(sys.executable).parent
PLACE = "bench-3"
GRACE = 8  # the agent's --grace (above the clients' idle pings, every 5 s): a killed client's session expires after it


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(address):
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) == 0


def client_identity(directory):
    """A splitbrain config directory with a client key pair of its own; returns its public key."""
    public, secret = zmq.curve_keypair()
    directory.mkdir(mode=0o700)
    (directory / "client.key").write_text(secret.decode() + "\n")
    os.chmod(directory / "client.key", 0o600)
    return public.decode()


class Lab:
    def __init__(self, root):
        self.root = root
        self.processes = []
        self.agent = None
        try:
            self._start_all(root)
        except BaseException:
            self.stop()  # a lab that did not come up leaves no coordinator, exporter nor agent behind
            raise

    def _start_all(self, root):
        self.coordinator = f"127.0.0.1:{free_port()}"
        (root / "coordinator").mkdir()
        self.start("coordinator", [VENV_BIN / "labgrid-coordinator", "-l", self.coordinator], cwd=root / "coordinator")
        # It takes a while to import and bind: nothing may ask it anything before it listens.
        wait_until(lambda: listening(self.coordinator), 30, "the coordinator to listen", interval=0.1,
                   diagnose=self.logs)
        self.users = {name: root / f"config-{name}" for name in ("alice", "bob")}
        keys = {name: client_identity(path) for name, path in self.users.items()}
        authorized = [f'labgrid-user="{name}" {key} # {name}@lab' for name, key in keys.items()]
        self.agent = _spawn.Agent(root / "agent", authorized=authorized, listen="tcp://127.0.0.1:0",
                                  extra=["--labgrid-place", PLACE, "--labgrid-coordinator", self.coordinator,
                                         "--grace", GRACE, "--labgrid-timeout", 5], timeout=20.0)
        self.port = int(self.agent.address.rsplit(":", 1)[1])
        (root / "exporter.yaml").write_text(textwrap.dedent(f"""\
            {PLACE}-splitbrain:
              NetworkService:
                address: 127.0.0.1
                port: {self.port}
                username: splitbrain
                password: "{{% raw %}}{self.agent.public_key}{{% endraw %}}"
            """))
        self.start("exporter", [VENV_BIN / "labgrid-exporter", "-c", self.coordinator, "--name", "bench3-pc",
                                root / "exporter.yaml"], cwd=root)
        for command in (["create"], ["add-match", f"bench3-pc/{PLACE}-splitbrain/NetworkService"]):
            done = subprocess.run([VENV_BIN / "labgrid-client", "-x", self.coordinator, "-p", PLACE, *command],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        wait_until(lambda: self.state()["service"], 30, "the exporter's NetworkService at the coordinator",
                   interval=0.3, diagnose=self.logs)

    def start(self, name, command, cwd):
        log = open(self.root / f"{name}.log", "wb")
        self.processes.append((name, subprocess.Popen([str(c) for c in command], cwd=cwd, stdout=log,
                                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                      start_new_session=True)))

    def logs(self):
        text = "".join(f"\n--- {p.name}:\n{p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log")))
        return text + (f"\n--- agent:\n{self.agent.log_tail(30)}" if self.agent else "")

    def state(self):
        """The place as the coordinator sees it: who acquired it, and whether the agent's service is there."""
        async def ask():
            session = labgrid_client.ClientSession(address=self.coordinator, loop=asyncio.get_running_loop())
            await asyncio.wait_for(session.start(), 10)
            try:
                place = session.places.get(PLACE)
                services = [r for groups in session.resources.values() for group in groups.values()
                            for r in group.values() if r.cls == "NetworkService"]
                return {"acquired": place.acquired if place else None, "service": bool(place and services)}
            finally:
                await session.stop()
                await session.close()
        return asyncio.run(asyncio.wait_for(ask(), 20))

    def environment(self, user):
        return dict(os.environ, LG_COORDINATOR=self.coordinator, LG_USERNAME=user, LG_HOSTNAME="lab-pc",
                    SPLITBRAIN_CONFIG=str(self.users[user]))

    def client(self, user, target=f"place:{PLACE}", wait=30):
        return Client(self, user, target, wait)

    def stop(self):
        if self.agent is not None:
            self.agent.stop()
        for name, process in self.processes:
            process.terminate()
        for name, process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


CLIENT = """
import sys, splitbrain
try:
    box = splitbrain.connect(sys.argv[1], wait=float(sys.argv[2]))
except Exception as exc:
    print("failed", type(exc).__name__, exc, flush=True)
    sys.exit(0)
print("connected", box.modules.os.getpid(), flush=True)
for line in sys.stdin:
    if line.strip() == "close":
        box.close()
        print("closed", flush=True)
        break
    print("pid", box.modules.os.getpid(), flush=True)
"""


class Client:
    """A client process of one labgrid user: connects to *target*, then answers "call" and "close" on stdin."""

    def __init__(self, lab, user, target, wait):
        self.process = subprocess.Popen([sys.executable, "-c", CLIENT, target, str(wait)], env=lab.environment(user),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.lines, self.errors = queue.SimpleQueue(), []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line.rstrip("\n"))

    def line(self, timeout=40):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the client said nothing within {timeout} s; its stderr: {self.errors}")

    def tell(self, what):
        self.process.stdin.write(what + "\n")
        self.process.stdin.flush()

    def close(self):
        self.tell("close")
        assert self.line() == "closed"
        assert self.process.wait(20) == 0

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("lab"))
    yield lab
    lab.stop()


@pytest.fixture
def place_free(lab):
    wait_until(lambda: lab.state()["acquired"] is None, 20, "the place is free", interval=0.3, diagnose=lab.logs)
    yield
    wait_until(lambda: lab.state()["acquired"] is None, 20, "the place is free again", interval=0.3,
               diagnose=lab.logs)


def test_a_client_connects_through_a_place_and_releases_it_when_it_closes(lab, place_free):
    alice = lab.client("alice")
    said = alice.line()
    assert said.startswith("connected "), (said, alice.errors, lab.logs())
    # SHALL: connecting through a place acquires it for its user, and the session runs on the place's agent.
    assert lab.state()["acquired"] == "lab-pc/alice"
    alice.tell("call")
    assert alice.line().startswith("pid ")
    alice.close()
    # SHALL: closing the slave releases the place.
    assert lab.state()["acquired"] is None


def test_a_second_user_waits_while_the_first_holds_the_place_and_gets_in_after_release(lab, place_free):
    alice = lab.client("alice")
    assert alice.line().startswith("connected "), alice.errors
    impatient = lab.client("bob", wait=1)
    said = impatient.line()
    assert said.startswith("failed PlaceBusy [splitbrain.place_busy] place bench-3 is still acquired by "
                           "lab-pc/alice after waiting 1 s for it (reservation "), said
    bob = lab.client("bob")
    # SHALL: the waiting client says who holds the place.
    wait_until(lambda: any("labgrid place bench-3 is acquired by lab-pc/alice; waiting for it" in line
                           for line in bob.errors), 40, "bob's progress line naming alice", interval=0.1)
    assert lab.state()["acquired"] == "lab-pc/alice"
    alice.close()
    said = bob.line()
    assert said.startswith("connected "), (said, bob.errors)
    assert lab.state()["acquired"] == "lab-pc/bob"
    bob.close()


def test_a_tcp_client_that_bypasses_labgrid_is_refused_by_the_agent(lab, place_free, monkeypatch):
    direct = f"{lab.agent.address}?key={lab.agent.public_key}"
    monkeypatch.setenv("SPLITBRAIN_CONFIG", str(lab.users["bob"]))
    with pytest.raises(splitbrain.PlaceNotHeld, match=r"^\[splitbrain\.place_not_held\] \S+ serves labgrid place "
                                                      r"bench-3 only to its holder; it is not acquired, not by bob "
                                                      r"\(the labgrid-user of bob@lab\); connect with place:bench-3"):
        splitbrain.connect(direct)
    alice = lab.client("alice")
    assert alice.line().startswith("connected "), alice.errors
    with pytest.raises(splitbrain.PlaceNotHeld, match=r"only to its holder; it is acquired by lab-pc/alice, not by "
                                                      r"bob \(the labgrid-user of bob@lab\)"):
        splitbrain.connect(direct)
    # The holder is admitted by whatever path it comes: the check is who holds the place.
    monkeypatch.setenv("SPLITBRAIN_CONFIG", str(lab.users["alice"]))
    box = splitbrain.connect(direct)
    assert box.modules.os.getpid() > 0
    box.close()
    alice.close()
    assert "refused a session of bob@lab (labgrid user bob): place bench-3: it is acquired by lab-pc/alice" \
        in lab.agent.log()


def test_a_session_whose_user_lost_the_place_is_refused_at_its_next_call(lab, place_free, monkeypatch):
    monkeypatch.setenv("SPLITBRAIN_CONFIG", str(lab.users["alice"]))
    monkeypatch.setenv("LG_COORDINATOR", lab.coordinator)
    monkeypatch.setenv("LG_USERNAME", "alice")
    monkeypatch.setenv("LG_HOSTNAME", "lab-pc")
    box = splitbrain.connect(f"place:{PLACE}")
    try:
        assert box.modules.os.getpid() > 0
        kicked = subprocess.run([VENV_BIN / "labgrid-client", "-x", lab.coordinator, "-p", PLACE, "release",
                                 "--kick"], capture_output=True, text=True, timeout=60, env=lab.environment("bob"))
        assert kicked.returncode == 0, kicked.stderr
        wait_until(lambda: "it is not acquired now" in _refusal(box), 20, "the session refused after the kick")
    finally:
        box.close()


def _refusal(box):
    try:
        box.modules.os.getcwd()
    except splitbrain.PlaceNotHeld as exc:
        assert str(exc).startswith("[splitbrain.place_not_held] ")
        assert "this session's user no longer holds it" in str(exc)
        return str(exc)
    return ""


def test_a_killed_client_frees_the_place_when_its_session_expires(lab, place_free):
    alice = lab.client("alice")
    assert alice.line().startswith("connected "), alice.errors
    assert lab.state()["acquired"] == "lab-pc/alice"
    alice.kill()
    # SHALL: the agent releases the place of a session that expired (its client acquired it for it).
    wait_until(lambda: lab.state()["acquired"] is None, GRACE + 20, "the place released after the grace period",
               interval=0.3, diagnose=lab.logs)
    assert "releasing labgrid place bench-3 from lab-pc/alice: its splitbrain session expired" in lab.agent.log()
    bob = lab.client("bob")
    assert bob.line().startswith("connected "), bob.errors
    bob.close()


def test_what_slave_place_resolves_connects_once_and_the_next_cell_reuses_it(lab, place_free, monkeypatch):
    """`%%slave place:bench-3` resolves its name with splitbrain.slave(): the first cell connects through
    the place, the next finds that slave connected; closing it releases the place."""
    for name, value in lab.environment("alice").items():
        monkeypatch.setenv(name, value)
    box = splitbrain.slave(f"place:{PLACE}")
    try:
        assert box.name == f"place:{PLACE}" and box.place.acquired
        assert splitbrain.slave(f"place:{PLACE}") is box
        assert lab.state()["acquired"] == "lab-pc/alice"
    finally:
        box.close()
    assert lab.state()["acquired"] is None


def test_a_hello_the_coordinator_does_not_answer_for_is_refused_at_the_agents_deadline(tmp_path, monkeypatch):
    """SHALL (bounded everything) answer a hello within --labgrid-timeout when the coordinator is gone."""
    config = tmp_path / "config"
    key = client_identity(config)
    agent = _spawn.Agent(tmp_path / "agent", authorized=[f'labgrid-user="alice" {key} # alice@lab'],
                         listen="tcp://127.0.0.1:0", timeout=20.0,
                         extra=["--labgrid-place", PLACE, "--labgrid-coordinator", f"127.0.0.1:{free_port()}",
                                "--labgrid-timeout", 1])
    try:
        monkeypatch.setenv("SPLITBRAIN_CONFIG", str(config))
        with pytest.raises(splitbrain.PlaceNotHeld, match=r"^\[splitbrain\.place_not_held\] \S+ serves labgrid place "
                                                          r"bench-3 only to its holder, and could not learn who holds "
                                                          r"it from the coordinator 127\.0\.0\.1:\d+ within 1 s \("):
            splitbrain.connect(f"{agent.address}?key={agent.public_key}", timeout=10)
    finally:
        agent.stop()
