# The two commands: `make up` brings the platform up; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: up test install mail clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

up: install
	$(PY) -m onboarding.devstack

test: install
	$(PY) -m pytest

# The dev stack's mailbox: notices and delivered keys.
mail:
	@ls -1t .data/mail/new 2>/dev/null | head -20 | sed 's|^|.data/mail/new/|'

clean:
	rm -rf $(VENV) .data
