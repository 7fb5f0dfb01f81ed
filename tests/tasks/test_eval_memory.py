"""Causal-LM evaluation never holds full-vocabulary logits for every position (issue 27 item 24):
the loss is computed at the labelled positions only, a few rows at a time. Through the CLI on a
tiny Llama with a 131,072-word vocabulary: the peak RSS of `llmctl eval` over 16 long chat rows is
within 150 MB of its peak over one row (the stock forward held 16 x 128 x 131,072 fp32 logits,
1 GB, plus their copies), and the loss is the one the stock forward gives."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import ONE_THREAD, cli_env, run_cli

VOCAB = 131_072
PROMPT = " ".join(["tell me about the film and the plot and the acting"] * 9)


def peak_rss_mb(*args) -> float:
    """Peak RSS (MB) of `llmctl ARGS`, the only child of a fresh wrapper process."""
    probe = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', 'llmctl', *sys.argv[1:]]);"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, r.returncode)")
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True,
                         env=cli_env(ONE_THREAD), timeout=600)
    peak, code = out.stdout.split()[-2:]
    assert code == "0", out.stderr[-2000:]
    return float(peak)


@pytest.fixture(scope="module")
def wide_run(tiny_models, tmp_path_factory):
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    tmp = tmp_path_factory.mktemp("eval-memory")
    model = tmp / "wide-llama"
    shutil.copytree(tiny_models["llama"], model)
    config = AutoConfig.from_pretrained(model)
    config.vocab_size = VOCAB  # rows past the tokenizer's are never used; the head is what costs
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(model)
    rows = [{"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "yes"}]}] * 16
    data = tmp / "chat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {"task": "causal-lm", "model": {"name_or_path": str(model)},
              "data": {"train": str(data), "validation": None, "max_length": 128},
              "train": {"max_steps": 1, "batch_size": 2, "eval_batch_size": 16, "precision": "fp32"},
              "output_dir": str(tmp / "run")}
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    result = run_cli("finetune", str(tmp / "r.yaml"), env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    return tmp, data


def test_eval_peak_memory_does_not_grow_with_the_logits(wide_run):
    tmp, data = wide_run
    one = peak_rss_mb("eval", str(tmp / "run"), "--data", str(data), "--max-samples", "1")
    full = peak_rss_mb("eval", str(tmp / "run"), "--data", str(data), "--batch-size", "16")
    assert full - one < 150, (one, full)


def test_eval_loss_is_the_stock_forwards(wide_run):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp, data = wide_run
    result = run_cli("eval", str(tmp / "run"), "--data", str(data), "--max-samples", "2", "--json", env=ONE_THREAD)
    assert result.exit_code == 0, result.stderr
    model = AutoModelForCausalLM.from_pretrained(tmp / "run" / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp / "run" / "model")
    # the labels llmctl's chat rendering gives (assistant turn only), cut to max_length as training cuts
    from llmctl.tasks.chat import examples

    conversation = [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": "yes"}]
    (ids,), (labels,) = examples([conversation], tokenizer, "test")
    cut = len(ids) - 128  # the prompt's start is dropped first
    ids, labels = torch.tensor([ids[cut:]]), torch.tensor([labels[cut:]])
    with torch.no_grad():
        stock = model(input_ids=ids, labels=labels).loss  # the full-logits forward and its loss
    assert result.json()["metrics"]["loss"] == pytest.approx(float(stock), rel=1e-5)
