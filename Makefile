# Lightbox: `make run` sets up and opens the app on the demo studies; `make test` sets up and runs the tests.
# System libraries Qt needs (Debian/Ubuntu), once per machine:
#   sudo apt-get install -y libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libportaudio2 libsndfile1 poppler-utils
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup run test bench fuzz clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/lightbox --demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

bench: setup
	$(VENV)/bin/lightbox bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
