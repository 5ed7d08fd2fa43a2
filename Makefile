# The two commands of the README. Both set everything up first (scripts/setup.sh is idempotent).
.PHONY: lab test setup build bench fidelity clean

lab: setup
	./scripts/lab.sh

test: setup
	cd build && ctest --output-on-failure

setup:
	./scripts/setup.sh

build: setup

bench: setup
	./scripts/bench.sh

# CPython's tests of the routed modules, plainly and inside a slave's context (tests/fidelity).
fidelity: setup
	cd build && ctest --output-on-failure -V -R '^fidelity$$'

clean:
	rm -rf build
