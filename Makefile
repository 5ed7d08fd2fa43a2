# The two commands of the README. Both set everything up first (scripts/setup.sh is idempotent).
.PHONY: lab test setup build bench bench-quick fidelity clean

lab: setup
	./scripts/lab.sh

test: setup
	cd build && ctest --output-on-failure

setup:
	./scripts/setup.sh

build: setup

# Every benchmark against its peers, then issue 11's figures as ratios (bench/run.sh).
bench: setup
	./scripts/bench.sh

# The same in about two minutes: fewer repetitions, 16 MiB bulk, the kernel's cold starts only.
bench-quick: setup
	./scripts/bench.sh --quick

# CPython's tests of the routed modules, plainly and inside a slave's context (tests/fidelity).
fidelity: setup
	cd build && ctest --output-on-failure -V -R '^fidelity$$'

clean:
	rm -rf build
