# tensorc — build and tests.  `make` builds build/tensorc, build/libtensorc.a
# and build/libtensorc.so; `make check` runs every test, then the whole suite
# again under AddressSanitizer + UndefinedBehaviorSanitizer.
CC ?= cc
BUILD ?= build
OPT ?= -O2 -g
SAN ?=
WARN = -Wall -Wextra -Wpedantic -Wshadow -Wmissing-prototypes
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $(WARN) -fPIC $(OPT) $(SAN) $(CFLAGS)
LDLIBS_ALL = -lm -ldl -lpthread
PYTHON ?= python3

SRC := $(wildcard src/*.c)
OBJ := $(SRC:src/%.c=$(BUILD)/obj/%.o)
TOOL_SRC := $(wildcard tools/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TEST_TOOLS := $(BUILD)/tests/run_programs

.PHONY: all check check-core check-asan unit programs errors pytest fuzz demo clean bench \
        python pytest-torch gpu-check

all: $(BUILD)/tensorc $(BUILD)/libtensorc.a $(BUILD)/libtensorc.so

$(BUILD)/obj/%.o: src/%.c src/tc.h include/tensorc.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libtensorc.a: $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libtensorc.so: $(OBJ)
	$(CC) $(SAN) -shared -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tensorc: $(TOOL_SRC) tools/*.h include/tensorc.h $(BUILD)/libtensorc.a
	$(CC) $(CFLAGS_ALL) -Itools -o $@ $(TOOL_SRC) $(BUILD)/libtensorc.a $(LDLIBS_ALL)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/unit.h tests/unit/front.h $(BUILD)/libtensorc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(BUILD)/libtensorc.a $(LDLIBS_ALL)

$(BUILD)/tests/run_programs: tests/run_programs.c tools/npy.c tools/npy.h $(BUILD)/libtensorc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itools -o $@ tests/run_programs.c tools/npy.c $(BUILD)/libtensorc.a $(LDLIBS_ALL)

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do echo "== $$t"; $$t || exit 1; done

programs: $(BUILD)/tests/run_programs
	$(BUILD)/tests/run_programs tests/programs/*.tc

errors: $(BUILD)/tensorc
	sh tests/errors/run.sh $(BUILD)/tensorc

# the Python package: python/tensorc/_C*.so built in place (`pip install .`
# installs it); its tests are tests/python/test_torch_*.py
python:
	$(PYTHON) setup.py -q build_ext --inplace --build-temp $(BUILD)/python \
	  --parallel $(shell nproc 2>/dev/null || echo 2)

pytest: $(BUILD)/tensorc python
	TENSORC_BIN=$(BUILD)/tensorc PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q tests/python

pytest-torch: python
	PYTHONPATH=$(CURDIR)/python $(PYTHON) -m pytest -q tests/python/test_torch_*.py

# the C tests, against one build
check-core: all unit programs errors

check-asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g" \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" check-core

check: check-core pytest check-asan
	@echo "all tests passed"

demo: all
	sh examples/demo.sh $(BUILD)/tensorc

# CPU benchmark against torch eager, torch.compile and Halide (bench/run.py;
# BENCH_ARGS=--quick for a shorter run); not part of `make check`
bench: all
	@$(PYTHON) -c "import numpy, torch, halide, matplotlib" 2>/dev/null || \
	  $(PYTHON) -m pip install -r bench/requirements.txt
	$(PYTHON) -m bench --tensorc $(BUILD)/tensorc $(BENCH_ARGS)

# On a machine with an NVIDIA GPU: the CUDA tests, the PyTorch CUDA tests and
# the GPU benchmark (tests/gpu/run.sh; results in $(OUT), default /tmp/tensorc-gpu)
gpu-check:
	OUT=$${OUT:-/tmp/tensorc-gpu} BUILD=$(BUILD) bash tests/gpu/run.sh

clean:
	rm -rf build build-asan
