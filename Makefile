# Entry points: `make demo` (set up, then the main job on the synthetic dataset) and `make test`.
VENV ?= .venv
ifeq ($(SPARSEDRIVE_SYSTEM_PYTHON),1)
PYTHON ?= python3
else
PYTHON ?= $(CURDIR)/$(VENV)/bin/python
endif
export VENV

.PHONY: setup demo test test-fast
setup:
	@bash tools/setup_env.sh

demo: setup
	@PYTHON=$(PYTHON) bash tools/demo.sh

# pytest exits 5 when it collects nothing: treat that as a failure too.
test: setup
	@$(PYTHON) -m pytest tests -q -p no:cacheprovider

test-fast: setup
	@$(PYTHON) -m pytest tests -q -m "not slow" -p no:cacheprovider
