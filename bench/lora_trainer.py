"""The reference side of bench/lora.py, run as its own process so its peak RSS is its own:
the Hugging Face Trainer + peft on the chat jsonl that llmctl reads.

    python bench/lora_trainer.py MODEL_DIR TRAIN_JSONL OUT_DIR SETTINGS_JSON

Loss on the assistant's answer only (its content and the end-of-turn token), the way TRL's
assistant_only_loss and llmctl's chat data do it; writes OUT_DIR/result.json (the Trainer's
own train_samples_per_second) and the merged model to OUT_DIR/merged for scoring. With
SETTINGS' eval_jsonl, the Trainer then evaluates the loss on those chat rows (`evaluate()` at its
default eval batch 8, answer tokens only, encoded like the training rows at the same max_length),
as llmctl evaluates its validation rows at the end of the epoch: the peak RSS covers both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def encode(tokenizer, messages: list[dict], max_length: int) -> dict:
    """Prompt tokens masked to -100, the answer learned: the rendered prompt (with the generation
    prompt) is a prefix of the rendered conversation, so the answer is what comes after it."""
    prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    whole = tokenizer.apply_chat_template(messages, tokenize=False)
    assert whole.startswith(prompt), "chat template does not render the prompt as a prefix"
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    # The answer's tokens up to and including its end-of-turn marker; the template's trailing
    # newline after <|im_end|> is not something the model must learn to say.
    answer = whole[len(prompt):]
    end = answer.find(tokenizer.eos_token)
    answer_ids = tokenizer(answer[: end + len(tokenizer.eos_token)], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def main(model_dir: str, train_jsonl: str, out_dir: str, settings_json: str) -> None:
    import datasets
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, PrinterCallback, Trainer,
                              TrainingArguments)

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    s = json.loads(settings_json)
    out = Path(out_dir)
    transformers.set_seed(s["seed"])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in Path(train_jsonl).read_text().splitlines() if line.strip()]
    train = datasets.Dataset.from_list([encode(tokenizer, r["messages"], s["max_length"]) for r in rows])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = s["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=s["epochs"], per_device_train_batch_size=s["batch"],
        learning_rate=s["lr"], weight_decay=0.0, warmup_steps=0, lr_scheduler_type="linear", seed=s["seed"],
        data_seed=s["seed"], use_cpu=True, bf16=s["bf16"], train_sampling_strategy="group_by_length",
        eval_strategy="no", save_strategy="no", prediction_loss_only=True, report_to="none", logging_steps=1_000_000, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100))
    trainer.remove_callback(PrinterCallback)
    metrics = trainer.train().metrics
    eval_loss = None
    if s.get("eval_jsonl"):
        rows = [json.loads(line) for line in Path(s["eval_jsonl"]).read_text().splitlines() if line.strip()]
        evaluated = datasets.Dataset.from_list([encode(tokenizer, r["messages"], s["max_length"]) for r in rows])
        eval_loss = float(trainer.evaluate(evaluated)["eval_loss"])
    model.merge_and_unload().save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")
    (out / "result.json").write_text(json.dumps({
        "samples_per_second": float(metrics["train_samples_per_second"]),
        "runtime_s": float(metrics["train_runtime"]), "trainable_parameters": trainable,
        "precision": "bf16" if s["bf16"] else "fp32", **({"eval_loss": eval_loss} if eval_loss is not None else {})}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
