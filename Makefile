# Entry points: `make demo` (set up, then the main job on the synthetic dataset) and `make test`.
VENV ?= .venv
ifeq ($(SPARSEDRIVE_SYSTEM_PYTHON),1)
PYTHON ?= python3
else
PYTHON ?= $(CURDIR)/$(VENV)/bin/python
endif
export VENV

.PHONY: setup demo learn-check test test-fast test-torch21 check-requirements
setup:
	@bash tools/setup_env.sh

demo: setup
	@PYTHON="$(PYTHON)" bash tools/demo.sh

# train both stages on one synthetic scene; fails unless every head learns (tools/learn_check.py)
learn-check: setup
	@PYTHONPATH="$(CURDIR)" "$(PYTHON)" tools/learn_check.py

# pytest exits 5 when it collects nothing: treat that as a failure too.
test: setup
	@"$(PYTHON)" -m pytest tests -q -p no:cacheprovider

test-fast: setup
	@"$(PYTHON)" -m pytest tests -q -m "not slow" -p no:cacheprovider

# The suite on the Ascend users' torch: a second venv with torch 2.1.2 (CPU), mmcv-full built against it
# (cached wheel), requirements.txt's ranges (no lock). TORCH21_PYTHON picks the interpreter (.ci/run: 3.8).
TORCH21_VENV ?= .venv-torch21
TORCH21_PYTHON ?= python3
test-torch21:
	@SPARSEDRIVE_SYSTEM_PYTHON=0 VENV="$(TORCH21_VENV)" SPARSEDRIVE_BASE_PYTHON="$(TORCH21_PYTHON)" \
		SPARSEDRIVE_TORCH="torch==2.1.2 torchvision==0.16.2" SPARSEDRIVE_LOCK=none bash tools/setup_env.sh
	@"$(CURDIR)/$(TORCH21_VENV)/bin/python" -m pytest tests -q -p no:cacheprovider

# SparseDrive.patch for upstream checkouts: `make patch` regenerates it (after any change to a file it ships);
# `make test-patch UPSTREAM=/path/to/upstream` tests it on a clean upstream clone at 52c4c05 (about 10 min).
.PHONY: patch test-patch
patch:
	@"$(PYTHON)" tools/make_patch.py

test-patch: setup
	@if [ -z "$(UPSTREAM)" ]; then echo "error: make test-patch UPSTREAM=<clean upstream SparseDrive checkout at 52c4c05>" >&2; exit 2; fi
	@SPARSEDRIVE_UPSTREAM_DIR="$(UPSTREAM)" "$(PYTHON)" -m pytest tests/tools/test_make_patch.py \
		tests/tools/test_sparsedrive_patch_upstream.py -q -p no:cacheprovider

# requirements.txt against pip's resolver for Python 3.8-3.12 x aarch64 / x86_64; asks the package index
check-requirements:
	@python3 tools/check_requirements.py
