# The two commands of the README. Both set everything up first (scripts/setup.sh is idempotent).
.PHONY: lab test setup build bench clean

lab: setup
	./scripts/lab.sh

test: setup
	cd build && ctest --output-on-failure

setup:
	./scripts/setup.sh

build: setup

bench: setup
	./scripts/bench.sh

clean:
	rm -rf build
