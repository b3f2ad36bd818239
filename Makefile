# Convenience front end over CMake. The CLI ends up at build/mopt.
JOBS ?= 2
BUILD ?= build

.PHONY: all build test demo bench install clean setup fuzz

all: build

setup:
	scripts/setup.sh

build:
	scripts/setup.sh --build-only
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# Everything: unit, CLI, LiteRT interop, sanitizers, valgrind, fuzzing.
test:
	scripts/test.sh

demo: build
	scripts/demo.sh

bench: build
	scripts/setup.sh
	.venv/bin/python bench/bench_float.py

fuzz:
	scripts/fuzz.sh

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX),)

clean:
	rm -rf build build-asan build-fuzz
