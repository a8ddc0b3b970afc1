# Two commands on a fresh machine: `make demo` (the tour) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench docs figures lint typecheck clean samples

# `make demo` installs what the tour runs (the API and the cli extra); `make test` adds the test,
# docs and dev extras (reference libraries, Ray, Playwright, mkdocs, ruff, mypy).
$(VENV)/.demo: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[cli]"
	$(PY) -m pip install --quiet --no-deps imagecorruptions==1.1.2  # the tour's frost photographs: data files only
	touch $@

$(VENV)/.installed: $(VENV)/.demo
	$(PY) -m pip install --quiet -e ".[cli,test,docs,dev]"
	$(PY) -m pip install --quiet --no-deps torch-lucent==0.1.8 torchattacks==3.5.1
	$(PY) -m pip install --quiet --no-deps foolbox==3.3.4  # the labelled samples (samples:imagenet, ...): data files only
	touch $@

demo: $(VENV)/.demo
	$(VENV)/bin/convscope tour --out tour
	$(VENV)/bin/convscope report sample:chelsea --out tour/report.html

# two workers at one thread each (tests/conftest.py groups the tests): on 2 cores this is faster than one
# process at 2 threads, whose threads wait for each other whenever one of them is descheduled
test: $(VENV)/.installed
	CONVSCOPE_TEST_THREADS=$${CONVSCOPE_TEST_THREADS:-1} $(PY) -m pytest -q -n 2 --dist loadgroup

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not browser and not distributed"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# real labelled images (20 ImageNet val JPEGs, 20 each of CIFAR-10/100, MNIST, Fashion-MNIST) from the foolbox wheel
samples: $(VENV)/.installed
	$(PY) -m pip install --quiet --no-deps foolbox==3.3.4

docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# the README's picture (docs/img/attribution.png), from the current defaults
figures: $(VENV)/.demo
	$(PY) docs/img/make_figures.py

bench: $(VENV)/.installed
	for script in benchmarks/*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) tour site .pytest_cache
