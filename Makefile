# Two commands for a fresh clone:
#   make train    a virtualenv (.venv) with ptb_lm, the CPU build of MXNet and matplotlib (curves.png), PTB in data/, then the chapter's run
#   make test     the same with the test extras, then the README's test command
# Settings: PYTHON=python3.11 (default: python3.12, else python3.11), VENV=.venv, PTB=/path/to/ptb.zip (a copy
# of PTB to use instead of downloading it), TRAIN_FLAGS="--epochs 1 --max-batches 200" (passed to ptb-lm-train).

VENV ?= .venv
# MXNet 1.9.1 needs numpy < 2, which has no wheel for 3.13: the first of these that is 3.11 or 3.12
PYTHON ?= $(shell for p in python3.12 python3.11; do \
	  $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null && { echo $$p; break; }; \
	done)
TRAIN_FLAGS ?=
PTB ?=

.PHONY: train test venv data check-python

check-python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "ptb-lm: error: no python3.12 or python3.11 on PATH: install one of them (MXNet 1.9.1 runs on 3.8 to 3.12; it is tested on 3.11 and 3.12), or give PYTHON=/path/to/python3.12" >&2; \
	  exit 2; \
	fi

# The virtualenv, remade when setup.py changes; EXTRAS chooses what is installed.
$(VENV)/.installed-%: setup.py | check-python
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 8) <= sys.version_info[:2] <= (3, 12))' || { \
	  echo "ptb-lm: error: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'), and MXNet 1.9.1 runs on 3.8 to 3.12: give PYTHON=python3.12 or python3.11" >&2; exit 2; }
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[$*]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# PTB where training looks: data/ptb.zip copied from PTB=..., else ../shared or a download at the first run.
data:
	@mkdir -p data
	@if [ -n "$(PTB)" ]; then \
	  [ -f "$(PTB)" ] || { echo "ptb-lm: error: PTB=$(PTB) is not a file: give the path of ptb.zip" >&2; exit 2; }; \
	  cp "$(PTB)" data/ptb.zip; \
	fi

train: $(VENV)/.installed-cpu,plot data
	$(VENV)/bin/ptb-lm-train --mode rnn_relu $(TRAIN_FLAGS)

test: $(VENV)/.installed-cpu,test data
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider
