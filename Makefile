# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
CLOUD_VENV := .cloud-venv
XFER := $(VENV)/bin/xfer

.PHONY: demo test unit bench lint deps system-packages clean

deps: system-packages $(VENV)/.installed $(CLOUD_VENV)/.installed

# Debian packages: memcached for the local cloud's tempauth (and keystonemiddleware's) tokens;
# systemd for systemd-analyze.
system-packages:
	@command -v memcached >/dev/null 2>&1 || { \
	  echo "installing Debian package memcached"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q memcached >/dev/null; }
	@# systemd-analyze checks the example units (tests/test_deploy.py)
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing Debian package systemd"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd >/dev/null; }

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

demo: deps
	$(XFER) demo

test: deps
	$(VENV)/bin/ruff check xfer tests benchmarks
	$(VENV)/bin/mypy xfer
	$(VENV)/bin/pytest

# The tests that need no local cloud (a test using one is marked integration by conftest):
# the quick loop while editing, under 30 s.
unit: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not integration" -q

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

lint: deps
	$(VENV)/bin/ruff check xfer tests benchmarks
	$(VENV)/bin/mypy xfer

clean:
	rm -rf $(VENV) $(CLOUD_VENV) .pytest_cache
