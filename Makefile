# Lightbox: `make run` sets up and opens the app on the demo studies; `make test` sets up and runs the tests.
# System libraries Qt needs (Debian/Ubuntu), once per machine:
#   sudo apt-get install -y libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libportaudio2 libsndfile1 poppler-utils
# and, for the DICOM node's tests (a real PACS, a modality's tools, the PACS's loopback-only bind shim):
#   sudo apt-get install -y orthanc dcmtk gcc libc6-dev
PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

SYSDEPS = libegl1 libgl1 libxkbcommon-x11-0 libxcb-cursor0 libportaudio2 libsndfile1 poppler-utils \
          orthanc dcmtk gcc libc6-dev

.PHONY: setup sysdeps run test bench fuzz gpu clean lock upgrade soak

# Installs the system libraries when running as root on Debian/Ubuntu and any is missing; otherwise says what to run.
# Orthanc is only the tests' PACS (they start their own, on loopback): the system service its package
# starts is stopped and disabled again when this installed it.
sysdeps:
	@missing=$$(for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq $$missing >/dev/null 2>&1 || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $$missing >/dev/null 2>&1)) || echo "warning: could not install $$missing"; \
	    if echo "$$missing" | grep -qx orthanc; then (systemctl disable --now orthanc || service orthanc stop) >/dev/null 2>&1 || true; fi; \
	  else echo "please install: sudo apt-get install -y $$missing"; fi; \
	fi

# Installs exactly the versions in requirements.lock (resolved from pyproject.toml by `make lock`), then
# Lightbox itself without touching them: a new upstream release cannot change an install silently.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	@touch $(STAMP)

# Re-resolve requirements.lock from pyproject.toml, keeping every pin that still satisfies it (after an
# edit to pyproject.toml). `make upgrade` moves every package to its newest allowed version; commit
# the new lock only after `make test` and `make soak` pass on it.
LOCK_FLAGS = -q --no-emit-index-url --no-emit-find-links --strip-extras --allow-unsafe \
	--extra test --extra batch --extra train -o requirements.lock pyproject.toml
lock:
	@test -x $(VENV)/bin/pip-compile || $(PY) -m pip install -q 'pip-tools>=7.4'
	$(VENV)/bin/pip-compile $(LOCK_FLAGS)

upgrade:
	@test -x $(VENV)/bin/pip-compile || $(PY) -m pip install -q 'pip-tools>=7.4'
	$(VENV)/bin/pip-compile --upgrade $(LOCK_FLAGS)
	@echo "requirements.lock re-resolved: run 'make test' and 'make soak' before committing it"

setup: sysdeps $(STAMP)

run: setup
	$(VENV)/bin/lightbox --demo

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# on a machine with a CUDA GPU: ONNX models on CUDA too (torch already is a CUDA build)
gpu: setup
	$(PY) -m pip uninstall -y -q onnxruntime
	$(PY) -m pip install -q -c requirements.lock "onnxruntime-gpu==$$(sed -n 's/^onnxruntime==//p' requirements.lock)"

bench: setup
	$(VENV)/bin/lightbox bench

# Scripted reading sessions against the real app (offscreen), judged: 0 crashes, RSS after the last round
# within 10 % of round 20, no growth of open handles, echo playback leaves None's count flat
# (tests/soak/__main__.py). Not part of `make test`; `make soak ROUNDS=5` is the short smoke version.
ROUNDS ?= 200
SEED   ?= 1
soak: setup
	QT_QPA_PLATFORM=offscreen nice -n 10 $(PY) -m tests.soak --rounds $(ROUNDS) --seed $(SEED)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ecg:.hd5 ecg:.csv ecg:.dcm pcg:.wav pcg:.flac echo:.avi echo:.dcm xray:.png xray:.dcm endo:.mp4

fuzz: setup
	$(PY) -m pip install -q atheris
	@for t in $(FUZZ_TARGETS); do m=$${t%%:*}; e=$${t#*:}; echo "== fuzz $$m $$e ($(FUZZ_SECONDS) s)"; \
	  PYTHONPATH=. $(PY) tests/fuzz/fuzz_reader.py $$m $$e -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
