"""The CPU-only speed-ups keep dropout's meaning and the run's determinism."""

import pytest
import torch

from llmctl.train.speedups.dropout import FastDropout, use_fast_dropout
from llmctl.train.speedups.memory import keep_freed_memory


def test_fast_dropout_drops_at_rate_p_and_rescales():
    layer = FastDropout(0.1).train()
    out = layer(torch.ones(200_000))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.9))


def test_fast_dropout_follows_torch_seed_and_backpropagates_through_the_mask():
    layer = FastDropout(0.3).train()
    x = torch.randn(4, 7, 16, requires_grad=True)
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), first)
    first.sum().backward()
    assert torch.equal(x.grad != 0, first != 0)


def test_fast_dropout_is_identity_in_eval_and_keeps_dtype():
    layer = FastDropout(0.5)
    x = torch.randn(3, 5).bfloat16()
    assert torch.equal(layer.eval()(x), x)
    assert layer.train()(x).dtype == torch.bfloat16


def test_use_fast_dropout_swaps_every_plain_dropout():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.2),
                                torch.nn.Sequential(torch.nn.Dropout(0.1)))
    assert use_fast_dropout(model) == 2
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert [type(m) for m in dropouts] == [FastDropout, FastDropout]
    assert [m.p for m in dropouts] == [0.2, 0.1]


def test_keep_freed_memory_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("LLMCTL_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False


class _NoScaler:
    def unscale_gradients(self):
        pass


def test_clip_gradients_matches_torch_bitwise_whether_or_not_it_clips():
    from llmctl.train.optim import clip_gradients

    for max_norm in (0.5, 1e6):  # clips / leaves alone
        torch.manual_seed(0)
        ours = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(3)]
        theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        for a, b in zip(ours, theirs):
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        norm = clip_gradients(_NoScaler(), ours, max_norm)
        expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        assert torch.equal(norm, expected)
        assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs))


def test_finetune_with_and_without_the_speedups_trains_the_same_model(tiny_models, tmp_path):
    """Through the real CLI: without dropout (so no random masks differ) the sped-up run and
    LLMCTL_CPU_SPEEDUPS=0 end with the same weights and metrics, and the saved model is
    plain transformers (no custom attention name, the full embedding table)."""
    import json

    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from helpers import copy_without_dropout, run_cli, sentiment_rows, write_csv, write_recipe

    model = copy_without_dropout(tiny_models["bert"], tmp_path / "bert-nodropout")
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40))
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(12))
    results = {}
    for label, env in (("fast", {}), ("stock", {"LLMCTL_CPU_SPEEDUPS": "0"})):
        recipe = write_recipe(tmp_path / f"{label}.yaml", model, train, valid, tmp_path / label,
                              train={"epochs": 2, "weight_decay": 0.01})
        out = run_cli("finetune", str(recipe), "--json", env=env)
        assert out.exit_code == 0, out.stderr
        results[label] = out.json()
    fast, stock = results["fast"], results["stock"]
    assert fast["metrics"]["loss"] == pytest.approx(stock["metrics"]["loss"], abs=1e-5)
    assert fast["metrics"]["accuracy"] == stock["metrics"]["accuracy"]
    weights = {label: load_file(str(tmp_path / label / "model" / "model.safetensors")) for label in results}
    assert set(weights["fast"]) == set(weights["stock"])
    for key, value in weights["stock"].items():
        assert torch.allclose(weights["fast"][key], value, atol=1e-5), key
    environment = {label: json.loads((tmp_path / label / "environment.json").read_text()) for label in results}
    assert environment["fast"]["cpu_speedups"] == ["keep_freed_memory", "fast_dropout", "fast_attention",
                                                   "first_position_only", "seen_embedding_rows"]
    assert environment["stock"]["cpu_speedups"] == []
    assert "llmctl" not in (tmp_path / "fast" / "model" / "config.json").read_text()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "fast" / "model")
    assert reloaded.config._attn_implementation == "sdpa"
    assert type(reloaded.get_input_embeddings()) is torch.nn.Embedding
