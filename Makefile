# The user's entry point. `make demo` shows everything working; `make test` checks it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# `make install GPU=1` adds TensorFlow's CUDA libraries (tensorflow[and-cuda] at the pinned version).
GPU ?=
STAMP := $(VENV)/.installed$(if $(GPU),-gpu)
TF_VERSION := $(shell sed -n 's/^tensorflow==//p' requirements.txt)
# `make bench-peer`: PyTorch (CPU) in its own environment, never in .venv.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed
# Two cores on the reference machine: keep TensorFlow from oversubscribing them.
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

# `make bench CPU_CAP=x86-64-v3` (and bench-peer): run as on an AVX2-only CPU, through
# benchmarks/cpu_cap.c (CPUID answered without AVX-512/VNNI/BF16/AMX; needs a CPU with cpuid_fault).
CPU_CAP ?=
CAP_LIB := benchmarks/tmp/cpu_cap.so
ifneq ($(filter-out x86-64-v3,$(CPU_CAP)),)
$(error CPU_CAP=$(CPU_CAP): the one level benchmarks/cpu_cap.c caps to is x86-64-v3)
endif
CAPPED := $(if $(CPU_CAP),LD_PRELOAD=$(CURDIR)/$(CAP_LIB))

DATA ?=
CONFIG ?=
OUT ?=
RUN ?=
ARGS ?=

.PHONY: install test test-all demo bench bench-scale bench-peer bench-kernels bench-int8 cpu-cap lint clean clean-runs paper1 paper2 paper3 paper4 \
        train-landslide train-rsic train-asc export-landslide export-rsic export-asc \
        evaluate-landslide evaluate-rsic evaluate-asc

install: $(STAMP)

# Re-installs only when requirements.txt changes; a second `make install` does nothing.
$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(if $(GPU),$(PY) -m pip install --quiet --disable-pip-version-check "tensorflow[and-cuda]==$(TF_VERSION)")
	@touch $(STAMP)

$(PEER_STAMP): benchmarks/peer/requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 2; }
	@test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r benchmarks/peer/requirements.txt
	@touch $(PEER_STAMP)

# The default suite skips tests marked `slow` (NASNetMobile's int8 QAT conversion, minutes on 2
# cores); `make test-all` runs them too (RUN_SLOW_EXPORT=1 adds nested-backbone QAT exports).
# TEST_WORKERS pytest processes (pytest-xdist), one test file each at a time, so that a file's
# fixtures are built once: much of a test is single-threaded Python (building, tracing, converting).
TEST_WORKERS ?= 2
test: install
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile

test-all: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

demo: install
	$(PY) -m scripts.demo --out runs/demo

# REAL_DATA: the folder holding real data sets (accuracy rows where they are present).
REAL_DATA ?= data
bench: install $(if $(CPU_CAP),$(CAP_LIB))
	$(CAPPED) $(PY) -m benchmarks.run --out benchmarks --real-data $(REAL_DATA)

# This project beside the official PyTorch baseline (benchmarks/peer.py); ARGS="--quick" for a smoke run.
bench-peer: install $(PEER_STAMP) $(if $(CPU_CAP),$(CAP_LIB))
	$(CAPPED) $(PY) -m benchmarks.peer --out benchmarks $(ARGS)

# Which oneDNN convolution kernels a unet_ce training step runs here, TensorFlow beside PyTorch:
# benchmarks/CONV_KERNELS.md and conv_kernels.json (a minute).
bench-kernels: install $(PEER_STAMP) $(if $(CPU_CAP),$(CAP_LIB))
	$(CAPPED) $(PY) -m benchmarks.conv_kernels --out benchmarks

# int8 convolutions in LiteRT beside ONNX Runtime (in .venv-peer) on this CPU:
# benchmarks/INT8_RUNTIMES.md and int8_runtimes.json (a minute).
bench-int8: install $(PEER_STAMP) $(if $(CPU_CAP),$(CAP_LIB))
	$(CAPPED) $(PY) -m benchmarks.int8_runtimes --out benchmarks

# The library alone (LD_PRELOAD=$PWD/benchmarks/tmp/cpu_cap.so any command): docs/performance.md.
cpu-cap: $(CAP_LIB)

$(CAP_LIB): benchmarks/cpu_cap.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -shared -fPIC -o $@ $< -ldl

lint: install
	$(VENV)/bin/ruff check .

# `make train-TASK DATA=dir [CONFIG=file] [OUT=dir] [ARGS="--set train.epochs=5 --fold all"]`
# `make export-TASK RUN=dir [ARGS="--target mcu"]`; `make evaluate-TASK RUN=dir [ARGS=...]`.
need = $(if $($(1)),,$(error set $(1)=... ($(2))))

train-landslide train-rsic train-asc: train-%: install
	$(call need,DATA,the data set folder)
	$(PY) -m $* train --data $(DATA) $(if $(CONFIG),--config $(CONFIG)) --out $(or $(OUT),runs/$*) $(ARGS)
export-landslide export-rsic export-asc: export-%: install
	$(call need,RUN,the run directory written by make train-$*)
	$(PY) -m $* export --run $(RUN) $(if $(DATA),--data $(DATA)) $(ARGS)
evaluate-landslide evaluate-rsic evaluate-asc: evaluate-%: install
	$(call need,RUN,the run directory written by make train-$*)
	$(PY) -m $* evaluate --run $(RUN) $(if $(DATA),--data $(DATA)) $(ARGS)

# One command per paper table (README, "Reproducing the papers"); resumable: run it again after a stop.
# `make paper1 DATA=dir [OUT=runs/paper1] [ARGS="--folds 0,1 --rungs unet_ce,full"]` (landslide ladder),
# `make paper2 DATA=dir [OUT=runs/paper2]` (asc teacher -> student -> int8), `make paper3 DATA=dir
# [ARGS="--teachers 2"]` (rsic benchmark -> combined teacher -> students -> int8), `make paper4 DATA=dir
# [ARGS="--benchmark runs/paper3/benchmark"]` (rsic Tables 1-3 -> the chosen model in int8); QUICK=1 runs
# the quick form on sample data made inside OUT (default runs/paperN_quick), no DATA needed.
paper1: install
	$(if $(QUICK),,$(call need,DATA,the Landslide4Sense folder; or QUICK=1 for sample data))
	$(PY) -m landslide ladder $(if $(DATA),--data $(DATA)) --out $(or $(OUT),runs/paper1$(if $(QUICK),_quick)) $(if $(QUICK),--quick) $(ARGS)
paper2: install
	$(if $(QUICK),,$(call need,DATA,the TAU 2022 development folder; or QUICK=1 for sample data))
	$(PY) -m asc paper2 $(if $(DATA),--data $(DATA)) --out $(or $(OUT),runs/paper2$(if $(QUICK),_quick)) $(if $(QUICK),--quick) $(ARGS)
paper3 paper4: paper%: install
	$(if $(QUICK)$(findstring --benchmark,$(ARGS)),,$(call need,DATA,the NWPU-RESISC45 folder; or QUICK=1 for sample data))
	$(PY) -m rsic paper$* $(if $(DATA),--data $(DATA)) --out $(or $(OUT),runs/paper$*$(if $(QUICK),_quick)) $(if $(QUICK),--quick) $(ARGS)

# `make clean` removes caches only: trained runs stay. `make clean-runs` deletes runs/ (every trained
# model, export and paper table under it) and lists what it deletes first.
clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis benchmarks/tmp
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

clean-runs:
	@if [ -d runs ]; then \
	  echo "deleting runs/ ($$(du -sh runs | cut -f1)):"; \
	  find runs -mindepth 1 -maxdepth 2 | sort | sed 's/^/  /'; \
	  rm -rf runs; \
	else echo "no runs/ folder: nothing to delete"; fi

# Throughput and peak memory of the data steps at growing sizes (synthetic data in the real layouts),
# extrapolated to the full data sets: benchmarks/scale.json and the Scale section of RESULTS.md.
# About 15 minutes on 2 cores; `make bench-scale QUICK=1` for a smoke run of a few minutes.
bench-scale: install
	$(PY) -m benchmarks.scale --out benchmarks $(if $(QUICK),--quick,)
