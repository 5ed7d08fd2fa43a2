"""labgrid places as targets: ``splitbrain.connect("place:bench-3")`` and ``%%slave place:bench-3``.

The labgrid coordinator named by ``LG_COORDINATOR`` (HOST:PORT) knows the place; this reserves it
(waiting, bounded, saying who holds it), acquires it, finds the splitbrain agent among its resources
(a ``NetworkService`` with ``username: splitbrain``: its address, port, and the agent's public key
in ``password``; docs/labgrid.md shows the exporter configuration) and gives the Slave what to
connect to. ``Place.release()`` releases the place when the Slave closes. labgrid's client API is
asyncio and gRPC: each exchange runs on a thread of its own with its own event loop, bounded.

Who we are to labgrid is labgrid's own ``HOST/USER`` (``LG_HOSTNAME``, ``LG_USERNAME``, else this
machine's name and the login name); the agent maps a client key to a labgrid user with the key's
``labgrid-user=`` option and refuses a session whose user does not hold the place.
"""

import asyncio
import os
import queue
import sys
import threading
import time

from . import _errors

PREFIX = "place:"
DEFAULT_WAIT = 60.0          # how long connect() waits for a place another user holds
COORDINATOR_TIMEOUT = 10.0   # the coordinator's answer to one exchange


def is_place(target):
    return isinstance(target, str) and target.startswith(PREFIX)


def default_wait():
    try:
        return float(os.environ.get("SPLITBRAIN_PLACE_WAIT", DEFAULT_WAIT))
    except ValueError:
        return DEFAULT_WAIT


class Place:
    """A labgrid place held for one Slave. ``acquired`` says whether we acquired it for that Slave
    (then ``release()`` releases it, and the agent does if our session expires); a place this user
    had acquired already (``labgrid-client acquire``) is left as it was."""

    def __init__(self, name, coordinator, me, address, public_key, acquired):
        self.name = name
        self.coordinator = coordinator
        self.me = me
        self.address = address
        self.public_key = public_key
        self.acquired = acquired
        self.released = False

    def hello(self):
        """What the hello tells the agent: the place, who we are (counted only by an --insecure
        agent; one with keys uses the key's labgrid-user=), and whether we acquired it for this session."""
        return {"name": self.name, "user": self.me, "acquired": self.acquired and not self.released}

    def release(self):
        """Releases the place if we acquired it and still hold it (labgrid's release-from: a place
        someone else holds by now is left alone). Idempotent; never raises (closing must work)."""
        if self.released or not self.acquired:
            self.released = True
            return
        self.released = True
        try:
            _run(lambda say, cancel: _release(self.name, self.coordinator, self.me), COORDINATOR_TIMEOUT + 2)
        except BaseException as exc:  # noqa: BLE001 - closing goes on; say why the place may stay acquired
            print(f"splitbrain: could not release labgrid place {self.name} on {self.coordinator}: {exc}",
                  file=sys.stderr)

    def __repr__(self):
        return f"<labgrid place {self.name} ({self.coordinator}) for {self.me}: {self.address}>"


def take(target, wait=None):
    """``place:NAME`` → a :class:`Place`, reserved and acquired (waiting up to *wait* seconds,
    default ``$SPLITBRAIN_PLACE_WAIT`` or 60, while another user holds it)."""
    name = target[len(PREFIX):]
    coordinator = os.environ.get("LG_COORDINATOR", "")
    if not name:
        raise _errors.error("bad_target", f"{target!r}: a place target is place:NAME")
    if not coordinator:
        raise _errors.error("place_unavailable",
                            f"{target}: LG_COORDINATOR is not set; set it to the labgrid coordinator's HOST:PORT")
    try:
        import labgrid.remote.client  # noqa: F401  (here, so a missing labgrid is said at once)
    except ImportError as exc:
        raise _errors.error("place_unavailable",
                            f"{target}: labgrid is not installed in this Python ({exc}); pip install labgrid") from None
    wait = default_wait() if wait is None else float(wait)
    return _run(lambda say, cancel: _acquire(name, coordinator, wait, say, cancel), wait + 3 * COORDINATOR_TIMEOUT)


def _run(make, timeout):
    """Runs the coroutine ``make(say, cancel)`` on a thread with its own event loop and waits for it
    here, at most *timeout* s, printing what it says; Ctrl-C here cancels it (a reservation it
    holds is cancelled) and raises KeyboardInterrupt once it ended."""
    said = queue.SimpleQueue()
    cancel = threading.Event()
    outcome = {}

    def body():
        try:
            outcome["value"] = asyncio.run(make(said.put, cancel))
        except BaseException as exc:  # noqa: BLE001 - carried to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=body, name="splitbrain-labgrid", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    interrupted = False
    while thread.is_alive():
        try:
            thread.join(0.2)
            while not said.empty():
                print(said.get(), file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            interrupted = True
            cancel.set()
            deadline = min(deadline, time.monotonic() + COORDINATOR_TIMEOUT)
        if time.monotonic() > deadline:
            cancel.set()
            if not thread.is_alive():
                break
            raise _errors.error("place_unavailable", f"the labgrid coordinator did not answer within {timeout:.0f} s")
    while not said.empty():
        print(said.get(), file=sys.stderr, flush=True)
    if interrupted:
        raise KeyboardInterrupt
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


async def _session(coordinator):
    from labgrid.remote.client import ClientSession

    session = ClientSession(address=coordinator, loop=asyncio.get_running_loop())
    try:
        await asyncio.wait_for(session.start(), COORDINATOR_TIMEOUT)
    except Exception as exc:
        await _close(session)
        raise _errors.error("place_unavailable", f"the labgrid coordinator {coordinator} (LG_COORDINATOR) did not "
                                                 f"answer: {exc or type(exc).__name__}; is labgrid-coordinator "
                                                 f"running there?") from None
    return session


async def _close(session):
    try:
        await asyncio.wait_for(session.stop(), COORDINATOR_TIMEOUT)
        await asyncio.wait_for(session.close(), COORDINATOR_TIMEOUT)
    except Exception:  # noqa: BLE001 - a session that could not start has little to stop
        pass


def _agent_service(session, place):
    """The place's splitbrain agent: (address, public key or None), or None."""
    for exporter, groups in sorted(session.resources.items()):
        for group_name, group in sorted(groups.items()):
            for resource_name, resource in sorted(group.items()):
                path = (exporter, group_name, resource.cls, resource_name)
                params = resource.params
                if resource.cls != "NetworkService" or params.get("username") != "splitbrain":
                    continue
                if not place.hasmatch(path):
                    continue
                host = str(params.get("address", ""))
                host = f"[{host}]" if ":" in host and not host.startswith("[") else host
                key = params.get("password") or None
                return f"tcp://{host}:{int(params.get('port', 0))}", (None if key in (None, "none") else key)
    return None


async def _acquire(name, coordinator, wait, say, cancel):
    from labgrid.remote.common import ReservationState
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

    session = await _session(coordinator)
    me = f"{session.gethostname()}/{session.getuser()}"
    token = None

    async def call(method, request):
        return await asyncio.wait_for(getattr(session.stub, method)(request), COORDINATOR_TIMEOUT)

    try:
        place = session.places.get(name)
        if place is None:
            known = ", ".join(sorted(session.places)) or "none"
            raise _errors.error("place_unavailable", f"there is no labgrid place {name} on the coordinator "
                                                     f"{coordinator} (places: {known})")
        service = _agent_service(session, place)
        if service is None:
            raise _errors.error("place_unavailable",
                                f"labgrid place {name} has no splitbrain agent among its resources: a NetworkService "
                                f"with username splitbrain, its address and port, and the agent's public key as "
                                f"password (docs/labgrid.md)")
        if place.acquired == me:
            return Place(name, coordinator, me, service[0], service[1], acquired=False)
        filters = {"main": pb.Reservation.Filter(filter={"name": name})}
        reply = await call("CreateReservation", pb.CreateReservationRequest(filters=filters, prio=0.0))
        token = reply.reservation.token
        started = time.monotonic()
        told = ()
        while True:
            polled = await call("PollReservation", pb.PollReservationRequest(token=token))
            state = ReservationState(polled.reservation.state)
            if state in (ReservationState.allocated, ReservationState.acquired):
                break
            if state in (ReservationState.expired, ReservationState.invalid):
                raise _errors.error("place_unavailable", f"the reservation {token} of labgrid place {name} is "
                                                         f"{state.name}")
            holder = session.places[name].acquired if name in session.places else None
            waited = time.monotonic() - started
            if waited > wait:
                raise _errors.error("place_busy",
                                    f"place {name} is still {_held(holder)} after waiting {wait:.0f} s for it "
                                    f"(reservation {token}, cancelled)")
            if cancel.is_set():
                raise KeyboardInterrupt
            if (holder,) != told:
                say(f"splitbrain: labgrid place {name} is {_held(holder)}; waiting for it (up to {wait:.0f} s, "
                    f"reservation {token})")
                told = (holder,)
            await asyncio.sleep(0.3)
        try:
            await call("AcquirePlace", pb.AcquirePlaceRequest(placename=name))
        except Exception as exc:
            details = exc.details() if hasattr(exc, "details") else exc
            raise _errors.error("place_unavailable", f"labgrid place {name} could not be acquired: {details}") from None
        await asyncio.wait_for(session.sync_with_coordinator(), COORDINATOR_TIMEOUT)
        service = _agent_service(session, session.places[name]) or service
        return Place(name, coordinator, me, service[0], service[1], acquired=True)
    finally:
        if token is not None:  # allocated and acquired, or given up: the reservation has done its work
            try:
                await call("CancelReservation", pb.CancelReservationRequest(token=token))
            except Exception:  # noqa: BLE001 - it expires by itself 60 s after the last poll
                pass
        await _close(session)


def _held(holder):
    return f"acquired by {holder}" if holder else "reserved for another client"


async def _release(name, coordinator, me):
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

    session = await _session(coordinator)
    try:
        request = pb.ReleasePlaceRequest(placename=name, fromuser=me)
        await asyncio.wait_for(session.stub.ReleasePlace(request), COORDINATOR_TIMEOUT)
    finally:
        await _close(session)
