"""The fidelity suite: CPython's own tests of the routed modules, run plainly and inside a slave's context.

``python tests/fidelity/fidelity.py`` (``make fidelity``) copies ``test_os``, ``test_shutil``,
``test_subprocess``, ``test_tempfile``, ``test_pathlib`` and ``test_glob`` out of the standard library
(Debian's ``libpython3.11-testsuite``), together with ``test.support`` and the data they read, into a
temporary directory, so that they are user code to splitbrain (not exempt from routing). Each suite
runs twice in the same run, in processes of its own: *local* (plain, splitbrain imported) and *slave*
(the whole run, imports included, inside ``with box:`` where ``box`` is an agent spawned in the same
working directory). It prints, per suite, passed/failed/errors/skipped of both and the share of the
locally passing tests that also pass on the slave.

Every test runs under a deadline (``--timeout``): a test that hangs kills its worker, counts as
``timeout`` and the worker restarts after it; a worker that dies counts its current test as ``crash``,
printed with the worker's output. A test that loses the slave's session (the agent's worker died:
``os.closerange`` over the worker's own descriptors) fails on its own and the worker restarts after it
with a new agent, so one lost session does not fail every test after it. ``--min-ratio`` (all suites) and ``--floors`` (per suite) make the exit status say whether every
suite reached its share; crashes, timeouts and a run that could not finish make it non-zero unless
``--allow-crashes``, and are printed with the worker's output either way.

Tests that can never pass in a slave's context are listed, each with its reason, in ``skips.txt``
next to this file (at most 3 % of a suite); they are skipped in the slave run only and left out of
the share. Nothing else here knows any test by name.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
SUITES = ("test_os", "test_shutil", "test_subprocess", "test_tempfile", "test_pathlib", "test_glob")
# What the copied suites need besides themselves: the package, its helpers and the data they read.
SUPPORT = ("__init__.py", "support", "subprocessdata", "mapping_tests.py")
SKIPS = HERE / "skips.txt"
PASSING = ("pass", "xfail")
LOST_SESSION = 3  # a worker's exit status after its slave's session was lost (see worker())


def stdlib_tests():
    import sysconfig
    return pathlib.Path(sysconfig.get_paths()["stdlib"]) / "test"


def read_skips(path=SKIPS):
    """``{test id: reason}`` from *path*: one ``id  # reason`` a line."""
    skips = {}
    if not path.exists():
        return skips
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("#")
        if not reason.strip():
            raise SystemExit(f"fidelity: {path}: {test_id.strip()} has no reason")
        skips[test_id.strip()] = reason.strip()
    return skips


# -- the worker: one suite, one mode, in a process of its own ------------------------------------------

def worker(suite, mode, events_path, done_path, skips_path):
    import _io
    import unittest

    import splitbrain

    def emit(**event):
        with splitbrain.local():
            with _io.open(events_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")

    done = set()
    if done_path:
        with _io.open(done_path, encoding="utf-8") as f:
            done = set(json.load(f))
    skips = read_skips(pathlib.Path(skips_path)) if mode == "slave" else {}

    class Result(unittest.TestResult):
        def startTest(self, test):
            super().startTest(test)
            self._status, self._detail = "pass", ""
            emit(start=test.id())

        def _set(self, status, err=None):
            rank = ("pass", "xfail", "skip", "fail", "error")
            if rank.index(status) >= rank.index(self._status) or status == "skip":
                self._status = status
                if err is not None:
                    with splitbrain.local():
                        self._detail = self._exc_info_to_string(err, self._current)[-1500:]

        def addError(self, test, err):
            self._current = test
            if isinstance(test, unittest.TestCase):
                self._set("error", err)
            else:  # a class or module fixture (_ErrorHolder): it has no startTest
                emit(start=test.id())
                self._current = test
                emit(end=test.id(), status="error", detail=self._exc_info_to_string(err, test)[-1500:])
                return
            super().addError(test, err)

        def addFailure(self, test, err):
            self._current = test
            self._set("fail", err)

        def addSubTest(self, test, subtest, err):
            if err is not None:
                self._current = test
                self._set("fail" if issubclass(err[0], test.failureException) else "error", err)

        def addSkip(self, test, reason):
            self._status, self._detail = "skip", reason

        def addExpectedFailure(self, test, err):
            self._status = "xfail"

        def addUnexpectedSuccess(self, test):
            self._status = "fail"
            self._detail = "unexpected success"

        def stopTest(self, test):
            emit(end=test.id(), status=self._status, detail=self._detail)
            super().stopTest(test)
            if box is not None and box.state == "session lost":
                # the slave's worker died in this test: the rest run in a new worker with a new agent
                emit(lost=test.id())
                raise SystemExit(LOST_SESSION)

    def flatten(tests):
        for test in tests:
            if isinstance(test, unittest.TestSuite):
                yield from flatten(test)
            else:
                yield test

    def run():
        module = __import__(suite)
        loaded = unittest.defaultTestLoader.loadTestsFromModule(module)
        todo = []
        for test in flatten(loaded):
            test_id = test.id()
            if test_id in done:
                continue
            if test_id in skips:
                emit(start=test_id)
                emit(end=test_id, status="listed", detail=skips[test_id])
                continue
            todo.append(test)
        unittest.TestSuite(todo).run(Result())

    box = None
    if mode == "local":
        run()
    else:
        box = splitbrain.spawn(f"fidelity-{suite}")
        with box:
            run()
        box.close()
    emit(finished=True)


# -- the driver -------------------------------------------------------------------------------------------

class Job:
    """One suite in one mode: a worker process, restarted after a test that hangs or crashes it."""

    MAX_RESTARTS = 25

    def __init__(self, suite, mode, root, copy, timeout):
        self.suite, self.mode, self.timeout = suite, mode, timeout
        self.dir = root / f"{suite}-{mode}"
        self.dir.mkdir()
        self.copy = copy
        self.results = {}   # test id → (status, detail)
        self.order = []
        self.incidents = []  # (test id, "timeout" | "crash" | "session lost" | "abandoned", output tail)
        self.restarts = 0
        self.starts = 0  # names each start's files
        self.finished = False
        self.process = None
        self.started = time.monotonic()
        self._start()

    def _start(self):
        n = self.starts
        self.starts += 1
        self.events = self.dir / f"events-{n}.jsonl"
        self.events.touch()
        self.output = self.dir / f"output-{n}.log"
        done_path = ""
        if self.results:
            done_path = str(self.dir / f"done-{n}.json")
            pathlib.Path(done_path).write_text(json.dumps(sorted(self.results)), encoding="utf-8")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.copy), env.get("PYTHONPATH", "")])
        env.setdefault("SPLITBRAIN_CONFIG", str(self.dir / "config"))
        command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", self.suite, self.mode,
                   str(self.events), done_path, str(SKIPS)]
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(command, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._offset = 0
        self._current = None
        self._lost = None
        self._since = time.monotonic()

    def _read(self):
        with open(self.events, encoding="utf-8") as f:
            f.seek(self._offset)
            chunk = f.read()
        lines = chunk.split("\n")
        complete, rest = lines[:-1], lines[-1]
        self._offset += len(chunk) - len(rest)
        for line in complete:
            event = json.loads(line)
            if "start" in event:
                self._current = event["start"]
                self._since = time.monotonic()
            elif "end" in event:
                self._record(event["end"], event["status"], event.get("detail", ""))
                self._current = None
                self._since = time.monotonic()
            elif "lost" in event:
                self._lost = event["lost"]
            elif event.get("finished"):
                self.finished = True

    def _record(self, test_id, status, detail):
        if test_id not in self.results:
            self.order.append(test_id)
        self.results[test_id] = (status, detail)

    def _tail(self):
        try:
            return self.output.read_text(encoding="utf-8", errors="replace")[-2500:]
        except OSError:
            return ""

    def _kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def poll(self):
        """Advances the job; True once it is over."""
        if self.process is None:
            return True
        self._read()
        code = self.process.poll()
        if code is not None:
            self._read()
            if self.finished and code == 0:
                self.process = None
                return True
            if code == LOST_SESSION and self._lost is not None and self._current is None:
                # that test ended (it failed): go on in a new worker. Bounded: each such restart
                # follows a test that ran, and does not count towards MAX_RESTARTS.
                self.incidents.append((self._lost, "session lost", self._tail()))
                self._start()
                return False
            kind, test_id = "crash", self._current or "(between tests)"
            self.incidents.append((test_id, kind, f"exit status {code}\n{self._tail()}"))
        elif time.monotonic() - self._since > self.timeout:
            kind, test_id = "timeout", self._current or "(between tests)"
            self._kill()
            self._read()
            self.incidents.append((test_id, kind, f"no progress for {self.timeout:g} s\n{self._tail()}"))
        else:
            return False
        if self._current is not None:
            self._record(self._current, kind, self.incidents[-1][2][-1500:])
        if self.restarts >= self.MAX_RESTARTS or test_id == "(between tests)" and self._stuck():
            self.incidents.append((self.suite, "abandoned", f"{self.restarts} restarts; the rest did not run"))
            self.process = None
            return True
        self.restarts += 1
        self._start()
        return False

    def _stuck(self):
        # Dying again before any test started means a restart would die the same way.
        return not any(True for _ in open(self.events, encoding="utf-8"))

    def stop(self):
        if self.process is not None:
            self._kill()
            self.process = None

    def counts(self):
        counts = {"pass": 0, "fail": 0, "error": 0, "skip": 0, "timeout": 0, "crash": 0, "listed": 0}
        for status, _ in self.results.values():
            key = {"xfail": "pass"}.get(status, status)
            counts[key] += 1
        return counts


def prepare(root):
    source = stdlib_tests()
    missing = [name for name in SUITES if not (source / f"{name}.py").exists()]
    if missing:
        raise SystemExit(f"fidelity: {source} lacks {', '.join(missing)}: install Debian's "
                         f"libpython3.11-testsuite (scripts/setup.sh does)")
    copy = root / "lib"
    package = copy / "test"
    package.mkdir(parents=True)
    for name in SUPPORT:
        if (source / name).is_dir():
            shutil.copytree(source / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source / name, package / name)
    for name in SUITES:
        shutil.copy2(source / f"{name}.py", copy / f"{name}.py")
    return copy


def report(jobs, skips, out=sys.stdout):
    by_suite = {}
    for job in jobs:
        by_suite.setdefault(job.suite, {})[job.mode] = job
    ratios = {}
    header = f"{'suite':<16}{'mode':<7}{'passed':>7}{'failed':>7}{'errors':>7}{'skipped':>8}{'timeout':>8}" \
             f"{'crash':>6}{'listed':>7}{'secs':>6}"
    print(header, file=out)
    for suite in SUITES:
        modes = by_suite.get(suite, {})
        for mode in ("local", "slave"):
            job = modes.get(mode)
            if job is None:
                continue
            c = job.counts()
            print(f"{suite:<16}{mode:<7}{c['pass']:>7}{c['fail']:>7}{c['error']:>7}{c['skip']:>8}{c['timeout']:>8}"
                  f"{c['crash']:>6}{c['listed']:>7}{job.elapsed:>6.0f}", file=out)
        if "local" in modes and "slave" in modes:
            local, slave = modes["local"].results, modes["slave"].results
            passing = [t for t, (s, _) in local.items() if s in PASSING and t not in skips]
            both = [t for t in passing if slave.get(t, ("missing",))[0] in PASSING]
            listed = sum(1 for t in local if t in skips)
            ratio = len(both) / len(passing) if passing else 1.0
            ratios[suite] = ratio
            share = listed / len(local) if local else 0.0
            print(f"{suite:<16}{'ratio':<7}{len(both)}/{len(passing)} locally passing tests pass on the slave "
                  f"({100 * ratio:.1f} %); {listed} listed in skips.txt ({100 * share:.1f} %)", file=out)
    return ratios


def details(jobs, out):
    by_suite = {}
    for job in jobs:
        by_suite.setdefault(job.suite, {})[job.mode] = job
    for suite, modes in by_suite.items():
        if "local" not in modes or "slave" not in modes:
            continue
        local, slave = modes["local"].results, modes["slave"].results
        for test_id in modes["local"].order:
            status = local[test_id][0]
            there = slave.get(test_id, ("missing", ""))
            if status in PASSING and there[0] not in PASSING and there[0] != "listed":
                print(f"=== {test_id}: local {status}, slave {there[0]}\n{there[1]}\n", file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("suites", nargs="*", default=list(SUITES), help="the suites to run (default: all six)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("FIDELITY_JOBS", "4")),
                        help="worker processes at a time (default 4, $FIDELITY_JOBS)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a test may take (default 30)")
    parser.add_argument("--deadline", type=float, default=0.0, help="seconds the whole run may take (0: none)")
    parser.add_argument("--min-ratio", type=float, default=0.0,
                        help="exit non-zero if a suite's share of locally passing tests that pass on the slave "
                             "is below this (0..1)")
    parser.add_argument("--floors", metavar="FILE", help="per-suite minimum shares, one `suite share  # why` a line "
                                                        "(a ratchet: raise them as fidelity improves)")
    parser.add_argument("--allow-crashes", action="store_true", help="timeouts and crashes alone do not fail")
    parser.add_argument("--details", metavar="FILE", help="write each test that passes locally but not on the "
                                                         "slave, with its traceback, to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        parser.error(f"unknown suites {unknown}; known: {', '.join(SUITES)}")
    skips = read_skips()
    root = pathlib.Path(tempfile.mkdtemp(prefix="splitbrain-fidelity-"))
    jobs = []
    try:
        copy = prepare(root)
        pending = [(suite, mode) for suite in args.suites for mode in ("slave", "local")]
        running = []
        start = time.monotonic()
        while pending or running:
            while pending and len(running) < max(1, args.jobs):
                suite, mode = pending.pop(0)
                job = Job(suite, mode, root, copy, args.timeout)
                jobs.append(job)
                running.append(job)
            for job in list(running):
                if job.poll():
                    job.elapsed = time.monotonic() - job.started
                    running.remove(job)
            if args.deadline and time.monotonic() - start > args.deadline:
                for job in running:
                    job.stop()
                    job.elapsed = time.monotonic() - job.started
                    job.incidents.append((job.suite, "abandoned", f"the run's deadline of {args.deadline:g} s"))
                running = []
                pending = []
            time.sleep(0.05)
        for job in jobs:
            if not hasattr(job, "elapsed"):
                job.elapsed = 0.0
        ratios = report(jobs, skips)
        incidents = [(job, *incident) for job in jobs for incident in job.incidents]
        for job, test_id, kind, tail in incidents:
            print(f"\n--- {job.suite} ({job.mode}): {kind} in {test_id}\n{tail}", file=sys.stdout)
        if args.details:
            with open(args.details, "w", encoding="utf-8") as f:
                details(jobs, f)
        status = 0
        floors = {suite: args.min_ratio for suite in ratios}
        if args.floors:
            for line in pathlib.Path(args.floors).read_text(encoding="utf-8").splitlines():
                line = line.partition("#")[0].split()
                if line:
                    floors[line[0]] = max(floors.get(line[0], 0.0), float(line[1]))
        low = {s: r for s, r in ratios.items() if r < floors.get(s, 0.0)}
        for suite, ratio in ratios.items():
            if ratio < 0.95:
                print(f"fidelity: {suite} at {100 * ratio:.1f} %, short of the goal of 95 %")
        if low:
            print("fidelity: below the floor: " + ", ".join(f"{s} {100 * r:.1f} % < {100 * floors[s]:.0f} %"
                                                         for s, r in low.items()))
            status = 1
        if incidents and not args.allow_crashes:
            print(f"fidelity: {len(incidents)} timeouts, crashes or abandoned runs (see above)")
            status = 1
        return status
    finally:
        for job in jobs:
            job.stop()
        if args.keep:
            print(f"fidelity: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
