# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
CLOUD_VENV := .cloud-venv
# What a user of the CLI has: python-openstackclient from PyPI and python-xferclient (client/).
CLI_VENV := .cli-venv
XFER := $(VENV)/bin/xfer
CLIENT_SOURCES := client/pyproject.toml $(wildcard client/xferclient/*.py client/xferclient/osc/*.py)

.PHONY: demo test unit bench soak lint deps system-packages clean

deps: system-packages $(VENV)/.installed $(CLOUD_VENV)/.installed $(CLI_VENV)/.installed

# Debian packages: memcached for the local cloud's tempauth (and keystonemiddleware's) tokens;
# systemd for systemd-analyze; chromium for the web view's tests (tests/test_web.py drives it
# headless; about 300 MB).
system-packages:
	@command -v memcached >/dev/null 2>&1 || { \
	  echo "installing Debian package memcached"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q memcached >/dev/null; }
	@# systemd-analyze checks the example units (tests/test_deploy.py)
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing Debian package systemd"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian package chromium"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[embedded,dev]'
	touch $@

# The local cloud's own packages (Swift, Keystone, Glance, gunicorn) live in their own venv, never
# mixed with xfer's; every version pinned (devcloud-constraints.txt). About 30 s.
$(CLOUD_VENV)/.installed: devcloud-requirements.txt devcloud-constraints.txt
	$(PYTHON) -m venv $(CLOUD_VENV)
	$(CLOUD_VENV)/bin/pip install -q --upgrade pip
	$(CLOUD_VENV)/bin/pip install -q -r devcloud-requirements.txt -c devcloud-constraints.txt
	$(CLOUD_VENV)/bin/pip check
	touch $@

# The client is installed as a user would (not editable), again whenever its sources change.
# About 2 minutes the first time (python-openstackclient's ~60 packages).
$(CLI_VENV)/.installed: cli-requirements.txt $(CLIENT_SOURCES)
	test -d $(CLI_VENV) || $(PYTHON) -m venv $(CLI_VENV)
	$(CLI_VENV)/bin/pip install -q -r cli-requirements.txt
	$(CLI_VENV)/bin/pip install -q --force-reinstall --no-deps ./client
	$(CLI_VENV)/bin/pip check
	touch $@

demo: deps
	$(XFER) demo --openstack $(CLI_VENV)/bin/openstack

test: deps
	$(VENV)/bin/ruff check xfer tests benchmarks client
	$(VENV)/bin/mypy xfer
	$(VENV)/bin/mypy --python-executable $(CLI_VENV)/bin/python client/xferclient
	$(VENV)/bin/pytest --durations=25

# The tests that need no local cloud (a test using one is marked integration by conftest):
# the quick loop while editing, under 30 s (25-26 s here on 2 cores, about 30 CPU-s). Bytecode
# is cached even where PYTHONDONTWRITEBYTECODE is set (recompiling and rewriting the asserts of
# ~440 modules per process took 13 of 48 s), and test_fuzz.py is not collected: schemathesis
# builds its cases at collection (6.7 CPU-s per process) and every one of them needs the cloud.
unit: $(VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/pytest -m "not integration" -q -n auto \
	  --ignore=tests/test_fuzz.py

# matplotlib for the benchmark's picture: installed by `make bench` only.
$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[embedded,dev,bench]'
	touch $@

# Not part of `make test`: 27-40 minutes on 2 cores. A quick subset:
#   make bench BENCH_ARGS="--sizes 1 --repeat 1 --scenarios colocated --sources plain"
bench: deps $(VENV)/.bench-installed
	@command -v rclone >/dev/null 2>&1 || { \
	  echo "installing Debian package rclone"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone >/dev/null; }
	$(VENV)/bin/python -m benchmarks.run $(BENCH_ARGS)

# Not part of `make test`: 50 image copies from 3 projects through two `xfer serve` on one
# database, checked in Glance and Swift (benchmarks/soak.py). Bounded: the script's own deadline
# for the copies, and `timeout` for the whole run (SIGTERM: the script stops its cloud).
soak: deps
	timeout -k 30 900 $(VENV)/bin/python -m benchmarks.soak $(SOAK_ARGS)

lint: deps
	$(VENV)/bin/ruff check xfer tests benchmarks client
	$(VENV)/bin/mypy xfer
	$(VENV)/bin/mypy --python-executable $(CLI_VENV)/bin/python client/xferclient

clean:
	rm -rf $(VENV) $(CLOUD_VENV) $(CLI_VENV) .pytest_cache
