"""task: preference, in process on tiny decoders: DPO's loss at the start is log 2 and equals TRL's
DPOTrainer on the same rows; LoRA's reference is the base with the adapters off; the reference
log-probs come back from the cache equal to recomputed ones; rows TRL would drop are counted;
the preference section's one-line refusals."""

import json
import math

import pytest
import torch

from helpers import NEGATIVE, POSITIVE
from llmctl.errors import DataError, RecipeError


def preference_rows(n: int, rejected: str | None = None) -> list[dict]:
    """The review's sentiment word is chosen, the other one rejected (or `rejected`: pairs a tiny
    model separates in a few steps, whatever the prompt)."""
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        review = (POSITIVE if positive else NEGATIVE)[(i // 2) % 10]
        rows.append({"prompt": f"Review: {review}\nSentiment:", "chosen": " positive" if positive else " negative",
                     "rejected": rejected or (" negative" if positive else " positive")})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def task_and_features(tmp_path, model_dir, rows, **data):
    from llmctl.config.schema import ModelConfig, PreferenceConfig
    from llmctl.models.load import load_tokenizer
    from llmctl.tasks.preference import PreferenceData, PreferenceTask

    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    settings = data.pop("settings", PreferenceConfig())
    task = PreferenceTask(PreferenceData(train=str(path), validation=None, **({"max_length": 32} | data)),
                          settings=settings)
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(model_dir)))
    split = task.load_split("train", str(path))
    return task, task.featurize(split, tokenizer), tokenizer


@pytest.fixture(scope="module")
def accelerator():
    from llmctl.train.accelerator import make_accelerator

    return make_accelerator("fp32", "cpu")


def batch_loss(task, features, tokenizer, model):
    batch = task.collate(features.rows(range(len(features))), tokenizer)
    batch.pop("index")
    with torch.no_grad():
        return task.training_loss(model, batch)


def load(model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def test_dpo_loss_at_the_start_is_log_2_with_zero_rewards(tmp_path, tiny_models, accelerator):
    task, features, tokenizer = task_and_features(tmp_path, tiny_models["gpt2"], preference_rows(6))
    model = load(tiny_models["gpt2"])
    features = task.reference_columns(features, model, accelerator, use_cache=False)
    loss, stats = batch_loss(task, features, tokenizer, model)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    assert stats["rewards/chosen"] == pytest.approx(0, abs=1e-6)
    assert stats["rewards/margins"] == pytest.approx(0, abs=1e-6)
    # the prompt is never learned: only response tokens carry labels
    batch = task.collate(features.rows([0]), tokenizer)
    prompt = len(features.rows([0])[0]["prompt_input_ids"])
    assert (batch["labels"][:, :prompt] == -100).all() and (batch["labels"][0, prompt:] != -100).any()


def test_dpo_loss_equals_trls_dpo_trainer_on_the_same_rows(tmp_path, tiny_models):
    """TRL 1.16's DPOTrainer tokenizes, collates and scores the same rows with a policy that is not its
    reference; llmctl's loss and rewards on them are the same numbers."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rows = preference_rows(6)
    reference, policy = load(tiny_models["gpt2"]), load(tiny_models["gpt2"])
    torch.manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    task, features, tokenizer = task_and_features(tmp_path, tiny_models["gpt2"], rows)
    trainer = DPOTrainer(model=policy, ref_model=reference, processing_class=tokenizer,
                         args=DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.1, max_length=32, report_to=[],
                                        use_cpu=True, bf16=False, per_device_train_batch_size=6),
                         train_dataset=Dataset.from_list(rows))
    policy.eval()
    with torch.no_grad():
        expected = float(trainer.compute_loss(policy, trainer.data_collator([trainer.train_dataset[i] for i in range(6)])))
    trl_metrics = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    features = task.reference_columns(features, reference, trainer.accelerator, use_cache=False)
    loss, stats = batch_loss(task, features, tokenizer, policy)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert abs(expected - math.log(2)) > 1e-3  # a real difference between policy and reference
    for name in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                 "logps/rejected"):
        assert stats[name] == pytest.approx(trl_metrics[name], abs=1e-5), name


def test_lora_reference_is_the_base_with_the_adapters_off(tiny_models):
    from peft import LoraConfig, get_peft_model

    from llmctl.tasks.preference_reference import reference_context

    base = load(tiny_models["qwen2"])
    ids = torch.tensor([[5, 17, 42, 8, 99, 3]])
    with torch.no_grad():
        expected = base(input_ids=ids).logits.clone()
        # init_lora_weights=False: B is random, so the adapters change the output
        model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        adapted = model(input_ids=ids).logits
        with reference_context(model):
            reference = model(input_ids=ids).logits
    assert not torch.allclose(adapted, expected)
    assert torch.equal(reference, expected)


def test_cached_reference_logps_equal_recomputed_ones(tmp_path, tiny_models, accelerator, monkeypatch):
    from llmctl.tasks.preference_reference import compute

    monkeypatch.setenv("LLMCTL_CACHE_DIR", str(tmp_path / "cache"))
    task, features, _ = task_and_features(tmp_path, tiny_models["gpt2"], preference_rows(5))
    model = load(tiny_models["gpt2"])
    first = task.reference_columns(features, model, accelerator)
    second = task.reference_columns(features, model, accelerator)
    assert [n.text.split(" in ")[0] for n in first.notes] == ["reference log-probs: computed for 5 pairs"]
    assert "pairs from the cache" in second.notes[0].text and "does not run" in second.notes[0].text
    chosen, rejected = compute(task, features, model, accelerator)
    assert (second.columns["ref_chosen_logps"] == chosen).all()
    assert (second.columns["ref_rejected_logps"] == rejected).all()
    # other weights are another reference: computed again, not read back
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    assert "computed" in task.reference_columns(features, model, accelerator).notes[0].text


def test_conversational_rows_use_the_chat_template_and_cut_responses_not_prompts(tmp_path, tiny_models):
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
             "chosen": [{"role": "assistant", "content": r["chosen"].strip() + " indeed" * 20}],
             "rejected": [{"role": "assistant", "content": r["rejected"].strip()}]} for r in preference_rows(4)]
    task, features, tokenizer = task_and_features(tmp_path, tiny_models["qwen2"], rows, max_length=96)
    row = features.rows([0])[0]
    prompt = tokenizer.decode(row["prompt_input_ids"])
    assert prompt.endswith("<|im_start|>assistant\n") and "Review: a great and moving film" in prompt
    assert tokenizer.decode(row["rejected_input_ids"]) == "negative<|im_end|>\n"  # whole: it fits
    assert len(row["prompt_input_ids"]) + len(row["chosen_input_ids"]) == 96  # the chosen's end cut
    assert tokenizer.decode(row["chosen_input_ids"]).startswith("positive indeed indeed")
    assert [n.text for n in features.notes] == [
        f"{tmp_path / 'prefs.jsonl'}: 4 of 4 pair(s) cut to data.max_length (96 tokens): the prompt kept whole, "
        "the responses' ends dropped."]


def test_ties_and_prompts_that_fill_max_length_are_skipped_and_counted(tmp_path, tiny_models):
    rows = preference_rows(6)
    rows[1]["rejected"] = rows[1]["chosen"]
    rows[4]["prompt"] = "Review: " + "a great film " * 30
    task, features, _ = task_and_features(tmp_path, tiny_models["gpt2"], rows)
    where = tmp_path / "prefs.jsonl"
    assert len(features) == 4
    assert [n.text for n in features.notes] == [
        f"{where}: skipped 1 row(s) whose chosen equals their rejected (first: {where}:2); they carry no preference.",
        f"{where}: skipped 1 row(s) whose prompt alone fills data.max_length (32 tokens; first: {where}:5)."]


def test_a_missing_column_names_the_files_columns(tmp_path, tiny_models):
    rows = [{"prompt": "p", "good": "a", "rejected": "b"}]
    with pytest.raises(DataError) as error:
        task_and_features(tmp_path, tiny_models["gpt2"], rows)
    assert str(error.value).startswith(f"data.chosen_column: column 'chosen' is not in {tmp_path / 'prefs.jsonl'}; "
                                       "its columns are: prompt, good, rejected.")


@pytest.mark.parametrize("section, message", [
    ({"beta": 0}, "preference.beta: must be > 0"),
    ({"method": "simpo", "label_smoothing": 0.1}, "preference.label_smoothing smooths DPO's reference-based loss; "
                                                  "method simpo has no reference: drop preference.label_smoothing"),
    ({"method": "dpo", "simpo_gamma": 1.0}, "preference.simpo_gamma is SimPO's margin; method dpo does not use it"),
])
def test_preference_settings_are_refused_naming_the_key(section, message):
    from llmctl.tasks.recipe import validate_recipe

    raw = {"task": "preference", "model": {"name_or_path": "m"}, "data": {"train": "t.jsonl"}, "preference": section}
    with pytest.raises(RecipeError) as error:
        validate_recipe(raw, source="r.yaml")
    assert message in str(error.value)


def test_simpo_and_orpo_need_no_reference(tmp_path, tiny_models, accelerator):
    from llmctl.config.schema import PreferenceConfig

    for method in ("simpo", "orpo"):
        task, features, tokenizer = task_and_features(tmp_path, tiny_models["gpt2"], preference_rows(4),
                                                       settings=PreferenceConfig(method=method))
        model = load(tiny_models["gpt2"])
        assert task.reference_columns(features, model, accelerator).columns is features.columns  # the reference never runs
        loss, stats = batch_loss(task, features, tokenizer, model)
        assert math.isfinite(float(loss)) and stats["rewards/chosen"] < 0  # beta x mean log-prob


def uneven_rows(n: int) -> list[dict]:
    """Pairs whose chosen responses differ in length, so a mean over tokens differs from a mean of
    per-pair means."""
    rows = preference_rows(n)
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["chosen"] += ", clearly and without any doubt at all"
    return rows


@pytest.mark.parametrize("method", ["orpo", "simpo"])
def test_orpo_and_simpo_losses_equal_trls_on_one_batch(tmp_path, tiny_models, method):
    """TRL's own ORPOTrainer / CPOTrainer functions on the full logits of the same batch: their
    get_batch_logps (per-token means), odds_ratio_loss / cpo_loss, and ORPO's NLL as TRL takes it,
    one mean over all the batch's chosen tokens (over the response tokens: llmctl never learns the
    prompt, where TRL's ORPO NLL also covers it)."""
    from types import SimpleNamespace

    from llmctl.config.schema import PreferenceConfig

    pytest.importorskip("trl")
    from trl.experimental.cpo import CPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    settings = PreferenceConfig(method=method, beta=0.25, **({"simpo_gamma": 0.3} if method == "simpo" else {}))
    task, features, tokenizer = task_and_features(tmp_path, tiny_models["gpt2"], uneven_rows(6), settings=settings)
    model = load(tiny_models["gpt2"])
    torch.manual_seed(1)
    with torch.no_grad():  # sharper than a random tiny model's near-uniform next-token guesses
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    batch = task.collate(features.rows(range(len(features))), tokenizer)
    batch.pop("index")
    labels, half = batch["labels"], len(batch["labels"]) // 2
    with torch.no_grad():
        loss, stats = task.training_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    trl_self = SimpleNamespace(beta=0.25, accelerator=SimpleNamespace(device=torch.device("cpu")), loss_type="simpo",
                               simpo_gamma=0.3, label_smoothing=0.0, alpha=0.0)
    means = ORPOTrainer.get_batch_logps(logits, labels, average_log_prob=True)
    if method == "orpo":
        ratio, chosen_rewards, _, _, _ = ORPOTrainer.odds_ratio_loss(trl_self, means[:half], means[half:])
        nll = torch.nn.CrossEntropyLoss()(logits[:half, :-1].reshape(-1, logits.shape[-1]), labels[:half, 1:].reshape(-1))
        expected = nll - ratio.mean()
        per_pair_nll = -means[:half].mean()  # what a mean of per-pair means would have given instead
        assert abs(float(per_pair_nll - nll)) > 1e-3
    else:
        losses, chosen_rewards, _ = CPOTrainer.cpo_loss(trl_self, means[:half], means[half:])
        expected = losses.mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert stats["rewards/chosen"] == pytest.approx(float(chosen_rewards.mean()), abs=1e-5)


def test_the_output_layer_runs_only_at_the_responses_tokens(tmp_path, tiny_models, accelerator):
    """No [2B, length, vocab] logits: the head sees one row per labelled response token, and the
    log-probs it gives are those of the full logits."""
    from llmctl.config.schema import PreferenceConfig

    task, features, tokenizer = task_and_features(tmp_path, tiny_models["qwen2"], uneven_rows(6),
                                                   settings=PreferenceConfig(method="simpo"))
    model = load(tiny_models["qwen2"])
    batch = task.collate(features.rows(range(len(features))), tokenizer)
    shapes = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, args, out: shapes.append(out.shape))
    try:
        with torch.no_grad():
            out = task.eval_outputs(model, {k: v for k, v in batch.items() if k != "index"})
    finally:
        handle.remove()
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert shapes == [torch.Size([1, labelled, model.config.vocab_size])]
    assert labelled < batch["labels"].numel() / 3
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    target = batch["labels"][:, 1:]
    picked = full[:, :-1].gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
    expected = picked.sum(-1)
    assert torch.allclose(torch.cat([out.chosen, out.rejected]), expected, atol=1e-5)


def test_in_bf16_with_the_cpu_speedups_dpo_still_starts_at_log_2(tmp_path, tiny_models, accelerator):
    """The reference runs the steps' own forward (the speed-ups' training attention, fp32 softmax):
    in bf16 the policy's first loss is log 2 to the last bit, not off by the kernels' rounding.
    (bf16 autocast by hand: accelerate's state is one per process, fp32 in this module.)"""
    from peft import LoraConfig, get_peft_model

    from llmctl.train.speedups.apply import speed_up_cpu_training

    bf16 = torch.autocast("cpu", dtype=torch.bfloat16)
    task, features, tokenizer = task_and_features(tmp_path, tiny_models["qwen2"], uneven_rows(6))
    model = get_peft_model(load(tiny_models["qwen2"]), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    applied, _ = speed_up_cpu_training(model.get_base_model(), features, tokenizer, "bf16")
    assert "fast_attention" in applied
    with bf16:
        features = task.reference_columns(features, model, accelerator, use_cache=False)
    model.train()
    batch = task.collate(features.rows(range(len(features))), tokenizer)
    batch.pop("index")
    with bf16:
        loss, stats = task.training_loss(model, batch)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-7)
    assert stats["rewards/margins"] == 0
