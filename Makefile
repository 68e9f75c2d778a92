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

test: setup
	$(VENV)/bin/pytest
