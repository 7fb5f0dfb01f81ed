"""The reference side of bench/dpo.py, run as its own process so its peak RSS is its own:
TRL's DPOTrainer with peft LoRA on the preference jsonl that llmctl reads.

    python bench/dpo_trl.py MODEL_DIR TRAIN_JSONL HELDOUT_JSONL OUT_DIR SETTINGS_JSON

Writes OUT_DIR/result.json: TRL's own train_samples_per_second, the first logged step's loss,
and its eval_rewards/accuracies (and the other eval rewards) on the held-out pairs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(model_dir: str, train_jsonl: str, heldout_jsonl: str, out_dir: str, settings_json: str) -> None:
    import datasets
    import torch
    import transformers
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import DPOConfig, DPOTrainer

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    s = json.loads(settings_json)
    out = Path(out_dir)
    transformers.set_seed(s["seed"])

    def rows(path: str) -> datasets.Dataset:
        return datasets.Dataset.from_list([json.loads(line) for line in Path(path).read_text().splitlines() if line])

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = s["lora"]
    args = DPOConfig(
        output_dir=str(out / "trl"), num_train_epochs=s["epochs"], per_device_train_batch_size=s["batch"],
        per_device_eval_batch_size=s["eval_batch"], learning_rate=s["lr"], weight_decay=0.0, warmup_steps=0,
        lr_scheduler_type="linear", seed=s["seed"], data_seed=s["seed"], use_cpu=s["device"] == "cpu",
        bf16=s["bf16"], beta=s["beta"], max_length=s["max_length"], eval_strategy="no", save_strategy="no",
        report_to="none", logging_steps=1, disable_tqdm=True)
    trainer = DPOTrainer(model=model, args=args, train_dataset=rows(train_jsonl), eval_dataset=rows(heldout_jsonl),
                         processing_class=tokenizer,
                         peft_config=LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                                target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    trainer.remove_callback(PrinterCallback)
    metrics = trainer.train().metrics
    first = next(entry for entry in trainer.state.log_history if "loss" in entry)
    evaluated = trainer.evaluate()
    (out / "result.json").write_text(json.dumps({
        "samples_per_second": float(metrics["train_samples_per_second"]), "runtime_s": float(metrics["train_runtime"]),
        "first_loss": float(first["loss"]), "precision": "bf16" if s["bf16"] else "fp32",
        "heldout": {k.removeprefix("eval_"): float(v) for k, v in evaluated.items()
                    if k.startswith(("eval_rewards/", "eval_logps/", "eval_loss"))}}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
