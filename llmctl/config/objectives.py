"""Recipe sections for training objectives beyond a task's own loss: knowledge distillation (any
task whose head the distiller knows) and preference tuning (task: preference).

The Recipe in llmctl/config/schema.py holds them; they live apart so that the schema stays the
recipe's outline and each objective's settings and checks read in one place.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from llmctl.config.section import Section

# The tasks whose head the distillation loss knows (their Task.distill_targets; see llmctl/train/distill.py).
DISTILL_TASKS = ("classification", "causal-lm")


class DistillConfig(Section):
    """Knowledge distillation: loss = (1 - alpha) * task cross-entropy
    + alpha * temperature**2 * KL(teacher_T || student_T), the teacher's logits computed once and cached."""

    teacher: str = Field(description="The teacher: a run directory or saved model of the same task and tokenizer.")
    temperature: float = Field(2.0, gt=0, description="Softens both distributions (logits / temperature).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KL term; 0 = plain fine-tuning.")
    top_k: int | None = Field(
        64, gt=0, description="causal-lm: keep the teacher's k most likely tokens per position, the rest of its "
                              "probability as one bucket; null = the full vocabulary. Classification keeps every label.")
    batch_size: int = Field(32, gt=0, description="Rows per teacher forward pass when its logits are computed.")
    augment: int = Field(
        0, ge=0, description="classification: perturbed copies of each training row (tokens masked, short spans "
                             "kept; Tang et al. 2019) that the teacher labels and the student also learns; 0 = none.")
    hidden_weight: float = Field(
        0.0, ge=0, description="classification: weight of a third term matching the student's first-token hidden "
                               "state after each layer to the teacher's (Patient KD: squared distance of the unit "
                               "vectors, summed over layers); 0 = off.")
    hidden_layers: list[int] | None = Field(
        None, description="With hidden_weight: for each student layer in order, the teacher layer (1 = its first) "
                          "it is matched to; null = evenly spaced, ending at the teacher's last (6 -> 3: 2, 4, 6).")


class PreferenceConfig(Section):
    """Preference tuning (task: preference) on prompt / chosen / rejected rows; names as TRL's."""

    method: Literal["dpo", "simpo", "orpo"] = Field(
        "dpo", description="dpo (sigmoid loss against a reference: the starting weights, or the base with the LoRA "
                           "adapters off), or the reference-free simpo or orpo.")
    beta: float = Field(0.1, description="dpo/simpo: scale of the log-ratio rewards; orpo: the weight of the "
                                         "odds-ratio term (the paper's lambda, TRL's beta). Must be > 0.")
    label_smoothing: float | None = Field(
        None, ge=0, lt=0.5, description="dpo only: the assumed share of flipped preference labels (cDPO); "
                                        "null = 0.")
    simpo_gamma: float | None = Field(
        None, description="simpo only: the target reward margin gamma (TRL's simpo_gamma); null = 0.5.")

    @field_validator("beta")
    @classmethod
    def _positive_beta(cls, value):
        if value <= 0:
            raise ValueError("must be > 0 (e.g. 0.1): it scales the rewards, and 0 or less learns nothing or "
                             "the reverse preference")
        return value

    @model_validator(mode="after")
    def _method_settings(self):
        if self.method != "dpo" and self.label_smoothing is not None:
            raise ValueError(f"preference.label_smoothing smooths DPO's reference-based loss; method "
                             f"{self.method} has no reference: drop preference.label_smoothing")
        if self.method != "simpo" and self.simpo_gamma is not None:
            raise ValueError(f"preference.simpo_gamma is SimPO's margin; method {self.method} does not use it: "
                             "drop preference.simpo_gamma or set preference.method: simpo")
        return self

    @property
    def reference_free(self) -> bool:
        return self.method != "dpo"


def check_distill(task: str, data, recipe) -> None:
    if task not in DISTILL_TASKS:
        raise ValueError(f"distill works with task: {' or '.join(DISTILL_TASKS)}, not {task!r}")
    if getattr(data, "regression", False):
        raise ValueError("distill matches the teacher's label distribution; a regression target has none")
    if getattr(data, "packing", False):
        raise ValueError("distill caches the teacher's outputs per example; drop data.packing")
    if recipe.peft is not None or recipe.zero_shot is not None:
        raise ValueError(f"distill trains the whole student; drop {'peft' if recipe.peft is not None else 'zero_shot'}")
    cfg = recipe.distill
    if cfg.hidden_weight > 0 and task != "classification":
        raise ValueError(f"distill.hidden_weight matches a classifier's first-token hidden states; task {task} has "
                         "no such summary: drop distill.hidden_weight")
    if cfg.augment and task != "classification":
        raise ValueError(f"distill.augment perturbs the texts of a classifier's rows for the teacher to label; task "
                         f"{task} has no such labels: drop distill.augment")
    if cfg.hidden_layers is not None and cfg.hidden_weight == 0:
        raise ValueError("distill.hidden_layers chooses the layers that distill.hidden_weight matches; set "
                         "distill.hidden_weight (e.g. 100) or drop distill.hidden_layers")
