"""Preference tuning of decoder LMs (task: preference): DPO against a reference, or the
reference-free SimPO and ORPO, on rows of prompt / chosen / rejected (llmctl.tasks.preference_data).

A feature row is one pair: the prompt's ids and each response's ids (columns prompt_input_ids,
chosen_input_ids, rejected_input_ids), plus, for DPO, the reference's log-probability of each
response (ref_chosen_logps, ref_rejected_logps), computed once before training by the starting
weights and kept in the feature cache (llmctl.tasks.preference_reference). A batch of B pairs is
2B sequences, chosen then rejected, right-padded; the prompt and padding are labelled -100, so
the prompt is never learned. The loss and TRL's metrics are llmctl.tasks.preference_loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from pydantic import Field

from llmctl.config.schema import DataConfig, PreferenceConfig
from llmctl.errors import UsageError
from llmctl.tasks import generative as gen
from llmctl.tasks import preference_data as pdata
from llmctl.tasks import preference_loss as ploss
from llmctl.tasks.base import Padding, Task
from llmctl.tasks.labelled_nll import labelled_logps


class PreferenceData(DataConfig):
    prompt_column: str = Field("prompt", description="Column holding the prompt: text, or a list of messages.")
    chosen_column: str = Field("chosen", description="Column holding the preferred response: text, or a list "
                                                     "holding the assistant turn.")
    rejected_column: str = Field("rejected", description="Column holding the dispreferred response, as chosen.")
    max_length: int = Field(512, gt=0, description="Tokens of prompt + response; the prompt is kept whole and the "
                                                   "responses' ends are cut.")


@dataclass
class PreferenceOutputs:
    loss: Any
    chosen: Any
    rejected: Any
    chosen_len: Any
    rejected_len: Any
    ref_chosen: Any = None
    ref_rejected: Any = None
    logits: Any = None


REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


class PreferenceTask(Task):
    name: ClassVar[str] = "preference"
    data_config: ClassVar[type[DataConfig]] = PreferenceData
    auto_model: ClassVar[str] = "AutoModelForCausalLM"
    cacheable_features: ClassVar[bool] = True

    def __init__(self, data_cfg: PreferenceData, labels=None, settings: PreferenceConfig | None = None,
                 reference: dict | None = None, no_dropout: dict | None = None):
        super().__init__(data_cfg, labels)
        self.settings = settings or PreferenceConfig()
        self.reference = reference  # the starting model's section (model: of the recipe), for eval
        self.no_dropout = no_dropout or {}  # config overrides that switch the model's dropout off

    def for_model(self, model_config) -> "PreferenceTask":
        """Dropout off in the model, as TRL does (disable_dropout): the policy then starts equal to its
        reference (loss log 2), and the log-ratios are not noise. peft.dropout stays as set."""
        names = {k: 0.0 for k, v in model_config.to_dict().items()
                 if ("dropout" in k or "pdrop" in k) and isinstance(v, float) and v > 0}
        return self._replaced(no_dropout=names)

    @classmethod
    def for_recipe(cls, recipe) -> "PreferenceTask":
        return cls(recipe.data, settings=recipe.preference, reference=recipe.model.model_dump(mode="json"))

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "PreferenceTask":
        return cls(cls.data_config.model_validate(meta["data"]),
                   settings=PreferenceConfig.model_validate(meta.get("preference") or {}),
                   reference=meta.get("reference"))

    def metadata(self) -> dict:
        return super().metadata() | {"preference": self.settings.model_dump(mode="json"),
                                     "reference": self.reference}

    def check_model(self, model_cfg) -> None:
        gen.check_architecture("causal-lm", model_cfg)

    def model_kwargs(self) -> dict:
        return dict(self.no_dropout)

    # -- data --------------------------------------------------------------------------
    def load_split(self, role: str, spec: str, labelled: bool = True):
        return pdata.read_split(self.data_cfg, role, spec, self.row_limit(role))

    def featurize(self, split, tokenizer, progress=None):
        from llmctl.data.features import Features

        prompts, chosen, rejected, _, notes = pdata.tokenize(split, tokenizer, self.data_cfg.max_length)
        lengths = [len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected)]
        if progress is not None:
            progress(len(split), len(split))
        columns = {"prompt_input_ids": prompts, "chosen_input_ids": chosen, "rejected_input_ids": rejected}
        return Features(columns=columns, lengths=lengths, tokenizer=tokenizer, notes=tuple(split.notes) + notes)

    def collate(self, rows: list[dict], tokenizer) -> dict:
        import torch

        from llmctl.data.collate import collate

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        sequences = []
        for side in ("chosen", "rejected"):
            for row in rows:
                prompt, response = list(row["prompt_input_ids"]), list(row[f"{side}_input_ids"])
                sequences.append({"input_ids": prompt + response, "labels": [-100] * len(prompt) + response,
                                  "index": row["index"]})
        batch = collate(sequences, Padding(sequences={"input_ids": pad, "labels": -100}))
        batch["index"] = batch["index"][: len(rows)]
        for name in REF_COLUMNS:
            if name in rows[0]:
                batch[name] = torch.tensor([float(r[name]) for r in rows], dtype=torch.float32)
        return batch

    # -- the loss ----------------------------------------------------------------------
    def _forward(self, model, inputs: dict) -> PreferenceOutputs:
        # the output layer only at the responses' tokens: no [2B, length, vocab] logits (labelled_nll.py)
        out = labelled_logps(model, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]},
                             inputs["labels"])
        logps, counts = out.sums, out.tokens
        half = logps.shape[0] // 2
        chosen, rejected = logps[:half], logps[half:]
        ref_c, ref_r = inputs.get("ref_chosen_logps"), inputs.get("ref_rejected_logps")
        if self.settings.method == "dpo" and ref_c is None:
            raise UsageError("preference: DPO needs the reference log-probabilities, and these features have none.",
                             "Run through `llmctl finetune` / `llmctl eval`, which compute them.")
        losses, _, _ = ploss.pair_losses(self.settings, chosen, rejected, counts[:half], counts[half:], ref_c, ref_r)
        return PreferenceOutputs(losses.mean(), chosen, rejected, counts[:half], counts[half:], ref_c, ref_r)

    def training_loss(self, model, inputs: dict):
        out = self._forward(model, inputs)
        _, rc, rr = ploss.pair_losses(self.settings, out.chosen.detach(), out.rejected.detach(), out.chosen_len,
                                      out.rejected_len, out.ref_chosen, out.ref_rejected)
        stats = ploss.summary(out.loss.detach().reshape(1), rc, rr, out.chosen, out.rejected)
        stats.pop("loss")
        return out.loss, stats

    # -- the reference -----------------------------------------------------------------
    def reference_columns(self, features, model, accelerator, use_cache: bool = True, trained: bool = False):
        if self.settings.reference_free or len(features) == 0 or REF_COLUMNS[0] in features.columns:
            return replace(features, notes=())  # nothing new to say
        from llmctl.tasks.preference_reference import starting_model, with_reference

        if trained and not hasattr(accelerator.unwrap_model(model), "peft_config"):
            # A full fine-tune: the reference is the model it started from, loaded once for this.
            model = starting_model(self, features.tokenizer, accelerator)
        return with_reference(self, features, model, accelerator, use_cache)

    # -- evaluation --------------------------------------------------------------------
    def eval_outputs(self, model, inputs: dict):
        return self._forward(model, inputs)

    def outputs_to_keep(self, outputs, batch) -> dict:
        kept = {"chosen": outputs.chosen, "rejected": outputs.rejected, "chosen_len": outputs.chosen_len,
                "rejected_len": outputs.rejected_len}
        if outputs.ref_chosen is not None:
            kept |= {"ref_chosen": outputs.ref_chosen, "ref_rejected": outputs.ref_rejected}
        return kept

    def compute_metrics(self, kept: dict, features, split) -> dict[str, float]:
        import numpy as np
        import torch

        t = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in kept.items()}
        losses, rc, rr = ploss.pair_losses(self.settings, t["chosen"], t["rejected"], t["chosen_len"],
                                           t["rejected_len"], t.get("ref_chosen"), t.get("ref_rejected"))
        return ploss.summary(losses, rc, rr, t["chosen"], t["rejected"])

    def default_metric(self) -> str:
        return "loss"

    def metric_names(self) -> list[str]:
        return ["loss", *ploss.METRICS]

    # -- prediction --------------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str):
        raise UsageError("A preference run is a causal LM: generate with it rather than predict.",
                         "Use `llmctl generate RUN_DIR \"PROMPT\"`, or eval it on pairs with "
                         "`llmctl eval RUN_DIR --data prefs.jsonl`.")

    def format_predictions(self, kept: dict, features, split) -> list[dict]:
        return []
