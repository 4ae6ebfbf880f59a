# Lightbox: `make run` sets up and opens the app on the demo studies; `make test` sets up and runs the tests.
# System libraries Qt needs (Debian/Ubuntu), once per machine:
#   sudo apt-get install -y libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libportaudio2 libsndfile1 poppler-utils
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

SYSDEPS = libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libportaudio2 libsndfile1 poppler-utils

.PHONY: setup sysdeps run test bench fuzz gpu clean

# Installs the system libraries when running as root on Debian/Ubuntu and any is missing; otherwise says what to run.
sysdeps:
	@missing=$$(for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$missing >/dev/null 2>&1)) || echo "warning: could not install $$missing"; \
	  else echo "please install: sudo apt-get install -y $$missing"; fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

setup: sysdeps $(STAMP)

run: setup
	$(VENV)/bin/lightbox --demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# on a machine with a CUDA GPU: ONNX models on CUDA too (torch already is a CUDA build)
gpu: setup
	$(PY) -m pip uninstall -y -q onnxruntime
	$(PY) -m pip install -q -e '.[gpu]'

bench: setup
	$(VENV)/bin/lightbox bench

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ecg:.hd5 ecg:.csv ecg:.dcm pcg:.wav pcg:.flac echo:.avi echo:.dcm xray:.png xray:.dcm endo:.mp4

fuzz: setup
	$(PY) -m pip install -q atheris
	@for t in $(FUZZ_TARGETS); do m=$${t%%:*}; e=$${t#*:}; echo "== fuzz $$m $$e ($(FUZZ_SECONDS) s)"; \
	  PYTHONPATH=. $(PY) tests/fuzz/fuzz_reader.py $$m $$e -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
