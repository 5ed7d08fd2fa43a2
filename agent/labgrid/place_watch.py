"""splitbrain-place-watch: the agent's eye on one labgrid place (docs/labgrid.md).

The supervisor (C++, no Python) runs this with the workers' Python when it serves a place
(`splitbrain-agent serve --labgrid-place NAME`), and talks to it in JSON lines:

* out, at start and at every change of the place, and after each ``sync``:
  ``{"place": {"exists": bool, "acquired": "host/user" | null, "allowed": [...]}, "sync": N?}``,
  or ``{"down": "why", "sync": N?}`` while the coordinator cannot be reached (it retries);
* in: ``{"sync": N}`` (answer with the coordinator's state, after everything sent before: a client
  that acquired the place a moment ago is seen), ``{"release_from": "host/user"}`` (release the
  place if, and only if, that user still holds it: a splitbrain session that acquired it expired).

It exits when its standard input closes (the supervisor is gone, however it ended).
"""

import argparse
import asyncio
import json
import sys

COORDINATOR_TIMEOUT = 10.0  # one call to the coordinator, and its start


def _write(line):
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


class Watch:
    def __init__(self, coordinator, place):
        self.coordinator = coordinator
        self.place = place
        self.session = None
        self.last = None

    def state(self):
        place = self.session.places.get(self.place) if self.session else None
        if place is None:
            return {"exists": False, "acquired": None, "allowed": []}
        return {"exists": True, "acquired": place.acquired, "allowed": sorted(place.allowed)}

    def tell(self, sync=None):
        line = {"place": self.state()} if self.session else {"down": self.down}
        if sync is not None:
            line["sync"] = sync
        if sync is not None or line != self.last:
            _write(line)
        self.last = {k: v for k, v in line.items() if k != "sync"}

    async def connect(self):
        from labgrid.remote.client import ClientSession

        watch = self

        class Session(ClientSession):
            async def on_place_changed(self, place_pb2):
                await super().on_place_changed(place_pb2)
                watch.tell()

            async def on_place_deleted(self, name):
                await super().on_place_deleted(name)
                watch.tell()

        session = Session(address=self.coordinator, loop=asyncio.get_running_loop())
        await asyncio.wait_for(session.start(), COORDINATOR_TIMEOUT)
        self.session = session
        self.tell()

    async def keep_connected(self):
        self.down = "not connected yet"
        delay = 0.5
        while True:
            if self.session is None:
                try:
                    await self.connect()
                    delay = 0.5
                except Exception as exc:  # unreachable, refused, timed out: say so, try again
                    self.down = f"the labgrid coordinator {self.coordinator} did not answer: {exc or type(exc).__name__}"
                    self.tell()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
            await asyncio.sleep(0.5)
            if self.session.stopping.is_set():
                self.down = f"the connection to the labgrid coordinator {self.coordinator} was lost"
                self.session = None
                self.tell()

    async def sync(self, number):
        if self.session is not None:
            try:
                await asyncio.wait_for(self.session.sync_with_coordinator(), COORDINATOR_TIMEOUT)
            except Exception as exc:
                self.down = f"the labgrid coordinator {self.coordinator} did not answer: {exc or type(exc).__name__}"
                self.session = None
        self.tell(sync=number)

    async def release_from(self, holder):
        from labgrid.remote.generated import labgrid_coordinator_pb2

        if self.session is None:
            return
        request = labgrid_coordinator_pb2.ReleasePlaceRequest(placename=self.place, fromuser=holder)
        try:
            await asyncio.wait_for(self.session.stub.ReleasePlace(request), COORDINATOR_TIMEOUT)
            print(f"splitbrain-place-watch: released place {self.place} from {holder}", file=sys.stderr, flush=True)
        except Exception as exc:
            print(f"splitbrain-place-watch: could not release place {self.place} from {holder}: {exc}",
                  file=sys.stderr, flush=True)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--place", required=True)
    args = parser.parse_args()
    watch = Watch(args.coordinator, args.place)
    keeper = asyncio.ensure_future(watch.keep_connected())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 16)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while True:
            line = await reader.readline()
            if not line:
                return  # the supervisor is gone
            try:
                order = json.loads(line)
            except ValueError:
                continue
            if "sync" in order:
                await watch.sync(order["sync"])
            elif "release_from" in order:
                await watch.release_from(str(order["release_from"]))
    finally:
        keeper.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
