"""The typed recipe: what a YAML recipe may say, with defaults and checks.

Every section forbids unknown keys so a typo fails loudly instead of being ignored.
Field descriptions double as documentation (README "Recipe reference" lists them).
Task-specific data keys live with each task (`llmctl/tasks/*.py`), which subclasses
`DataConfig`; `Recipe[TaskData]` ties them together.
"""

from __future__ import annotations

from typing import Generic, Literal, TypeVar, Union

from pydantic import Field, PrivateAttr, field_validator, model_validator

from llmctl.config.objectives import DISTILL_TASKS, DistillConfig, PreferenceConfig, check_distill  # noqa: F401
from llmctl.config.section import Section

# torch.manual_seed and numpy's legacy seeding both take 0 .. 2**32 - 1; anything else fails
# (or wraps) only once training starts.
MAX_SEED = 2**32 - 1


TOKENIZER_KINDS = ("char", "bpe", "unigram", "wordpiece")


class TokenizerTrain(Section):
    """A tokenizer trained on the training split before the model is built (`tokenizers` library)."""

    train: Literal["char", "bpe", "unigram", "wordpiece"] = Field(
        description="char: one token per character (nanoGPT's shakespeare_char); bpe: byte-level BPE (GPT-2's); "
                    "unigram: SentencePiece's unigram; wordpiece: BERT's.")
    vocab_size: int | None = Field(
        None, gt=0, description="Tokens in the vocabulary, special tokens included; needed for bpe, unigram and "
                                "wordpiece; char takes every character of the training text.")
    min_frequency: int = Field(2, gt=0, description="bpe / wordpiece: a merge or piece must occur this often.")

    @model_validator(mode="after")
    def _size(self):
        if self.train != "char" and self.vocab_size is None:
            raise ValueError(f"a {self.train} tokenizer needs vocab_size (e.g. {{train: {self.train}, vocab_size: 8000}})")
        if self.train == "char" and self.vocab_size is not None:
            raise ValueError("a char tokenizer takes every character of the training text; drop vocab_size")
        return self


class ModelConfig(Section):
    name_or_path: str | None = Field(
        None, description="Hub id (e.g. bert-base-uncased), a local directory, or a .gguf file; or model.config instead.")
    config: dict | str | None = Field(
        None, description="Pre-train from scratch: a new model built from this config (a mapping with model_type "
                          "and the config's own keys, or a path to a config.json), with the architecture's own "
                          "initialisation. Instead of name_or_path; needs model.tokenizer.")
    tokenizer: str | TokenizerTrain | None = Field(
        None, description="With model.config: a tokenizer directory, or {train: char|bpe|unigram|wordpiece, "
                          "vocab_size: N} to train one on the training split (kept in the feature cache, saved "
                          "with the model).")
    gguf_file: str | None = Field(
        None, description="A GGUF checkpoint (NAME.gguf) inside name_or_path, loaded de-quantized; needs `pip install gguf`."
    )
    trust_remote_code: bool = Field(
        False, description="Run custom modelling code shipped with the checkpoint. Off unless you trust it."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to load.")
    allow_pickle_weights: bool = Field(
        False, description="Allow .bin (pickle) weights, which can run code on load. Safetensors otherwise."
    )
    init_from: str | None = Field(
        None, description="Start from this model's (or run's) weights cut down to model.layers: a smaller student "
                          "for distillation. name_or_path defaults to it (its tokenizer is used).")
    layers: list[int] | None = Field(
        None, description="With init_from: which of its transformer layers the new model keeps, in order, "
                          "e.g. [0, 1, 2]; embeddings and head are copied too.")

    @model_validator(mode="before")
    @classmethod
    def _name_from_init(cls, value):
        """name_or_path defaults to init_from (a run directory: its model/ folder), whose tokenizer the new model uses."""
        if isinstance(value, dict) and value.get("init_from") and not value.get("name_or_path"):
            value = dict(value, name_or_path=init_source(str(value["init_from"])))
        return value

    @model_validator(mode="after")
    def _layers_with_init(self):
        if self.layers is not None and self.init_from is None:
            raise ValueError("model.layers picks layers of model.init_from, which is not set; "
                             "set model.init_from: TEACHER or drop model.layers")
        if self.init_from is not None:
            if self.name_or_path not in (self.init_from, init_source(self.init_from)):
                raise ValueError(f"model.init_from {self.init_from!r} and model.name_or_path {self.name_or_path!r} "
                                 "differ; the new model takes init_from's tokenizer, so drop name_or_path")
            if not self.layers:
                raise ValueError("model.init_from needs model.layers, the layers to keep, e.g. [0, 1, 2]")
            if any(i < 0 for i in self.layers) or len(set(self.layers)) != len(self.layers):
                raise ValueError(f"model.layers {self.layers}: give distinct layer numbers from 0")
        return self


    @model_validator(mode="after")
    def _one_source(self):
        if self.config is not None and self.name_or_path is not None:
            raise ValueError("give model.name_or_path (a pretrained model) or model.config (a new model), not both")
        if self.config is None and self.name_or_path is None:
            raise ValueError("give model.name_or_path (a pretrained model) or model.config (a new model from scratch)")
        if self.config is None and self.tokenizer is not None:
            if isinstance(self.tokenizer, TokenizerTrain):
                raise ValueError("model.tokenizer.train makes a new vocabulary, which the embeddings of the pretrained "
                                 f"model {self.name_or_path!r} do not know; use model.config to pre-train from "
                                 "scratch, or drop model.tokenizer")
            raise ValueError("model.tokenizer goes with model.config; a pretrained model (model.name_or_path) "
                             "brings its own tokenizer")
        if self.config is not None:
            if self.tokenizer is None:
                raise ValueError("a model from model.config needs model.tokenizer: a tokenizer directory, or "
                                 "{train: char|bpe|unigram|wordpiece, vocab_size: N} to train one on the data")
            if self.gguf_file is not None:
                raise ValueError("model.gguf_file names a checkpoint; a model from model.config has none")
            if isinstance(self.config, dict) and not isinstance(self.config.get("model_type"), str):
                raise ValueError("model.config needs model_type (e.g. gpt2, llama, qwen2, bert, t5)")
            trained = self.tokenizer.vocab_size if isinstance(self.tokenizer, TokenizerTrain) else None
            declared = self.config.get("vocab_size") if isinstance(self.config, dict) else None
            if trained and declared and trained != declared:
                raise ValueError(f"model.config.vocab_size {declared} and model.tokenizer.vocab_size {trained} "
                                 "disagree; drop model.config.vocab_size (the tokenizer decides it)")
        return self

    @property
    def scratch(self) -> bool:
        """A new model built from model.config, not loaded."""
        return self.config is not None

    @property
    def label(self) -> str:
        """How messages name the model: its name_or_path, or 'a new <model_type>'."""
        if self.name_or_path is not None:
            return self.name_or_path
        kind = self.config.get("model_type") if isinstance(self.config, dict) else self.config
        return f"a new {kind} (model.config)"


def init_source(path: str) -> str:
    """model.init_from as a model folder: a run directory's model/ (where finetune saved it), else the path."""
    from pathlib import Path

    folder = Path(path).expanduser() / "model"
    return str(folder) if (folder / "config.json").is_file() else path


class DataConfig(Section):
    """Keys every task understands; tasks add their own in a subclass."""

    dataset: str | None = Field(None, description="Hub dataset id; omit when train/validation are local files.")
    config: str | None = Field(None, description="Hub dataset configuration, e.g. sst2 for nyu-mll/glue.")
    train: str | None = Field("train", description="Split name, or local file(s): a file (csv, tsv, jsonl, json, parquet, "
                              "txt; optionally .gz/.bz2/.xz/.zst), a glob or a folder.")
    validation: str | None = Field("validation", description="Split name or local file used for evaluation.")
    test: str | None = Field(None, description="Optional split or file evaluated once after training.")
    column_names: list[str] | None = Field(
        None, description="Column names for csv/tsv files without a header row (a first row equal to them is skipped)."
    )
    max_length: int = Field(128, gt=0, description="Tokens per example after truncation.")
    max_train_samples: int | None = Field(None, gt=0, description="Use only the first N training rows.")
    max_eval_samples: int | None = Field(None, gt=0, description="Use only the first N validation rows during training (the test split and eval score every row).")
    cache: bool = Field(True, description="Keep the tokenized training features in $LLMCTL_CACHE_DIR for the next run.")
    revision: str | None = Field(None, description="Hub dataset revision (branch, tag or commit) to load with data.dataset.")
    text_split: Literal["line", "paragraph", "document"] = Field(
        "line", description=".txt files: one example per non-blank line, per paragraph (blank-line separated), "
                            "or per file (document: the whole text, for pre-training corpora)."
    )


StepsOrEpoch = Union[Literal["epoch"], int]
# train.report_to names (llmctl/train/tracking.py starts them through accelerate)
TRACKERS = ("tensorboard", "mlflow", "wandb")


class TrainConfig(Section):
    epochs: float = Field(3, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    batch_size: int = Field(
        32, gt=0, description="Examples per forward pass summed over all processes (split evenly between them)."
    )
    eval_batch_size: int = Field(64, gt=0, description="Examples per evaluation batch, over all processes.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Forward passes per optimizer step.")
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate of the optimizer.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="Fraction of steps spent warming up the learning rate.")
    warmup_steps: int | None = Field(None, ge=0, description="Warm-up steps; overrides warmup_ratio.")
    lr_scheduler: Literal["linear", "cosine", "constant", "cosine_with_restarts", "polynomial",
                          "warmup_stable_decay"] = Field(
        "linear", description="Decay after warm-up (transformers' schedules): linear, cosine, constant, "
                              "cosine_with_restarts (train.lr_cycles), polynomial (train.lr_power, to 0), "
                              "warmup_stable_decay (constant, then a cosine decay over train.lr_decay_ratio of the steps).")
    lr_cycles: int = Field(1, gt=0, description="cosine_with_restarts: hard restarts of the cosine.")
    lr_power: float = Field(1.0, gt=0, description="polynomial: power of the decay (1.0 = linear).")
    lr_decay_ratio: float = Field(0.1, ge=0, le=1, description="warmup_stable_decay: fraction of the steps that decay.")
    optimizer: Literal["adamw", "adamw_foreach", "adafactor", "sgd"] = Field(
        "adamw", description="adamw: torch AdamW's fused kernel; adamw_foreach: its multi-tensor kernel; "
                             "adafactor: transformers' Adafactor at train.learning_rate; sgd: torch SGD "
                             "(train.sgd_momentum).")
    sgd_momentum: float = Field(0.0, ge=0, lt=1, description="sgd: momentum.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, about a third more compute.")
    min_learning_rate: float = Field(
        0.0, ge=0, description="Where linear / cosine decay ends (nanoGPT's min_lr); below learning_rate.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip gradients to this norm; null disables.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where the CPU/GPU supports it, fp16 on older GPUs, else fp32."
    )
    group_by_length: bool = Field(True, description="Batch examples of similar length to cut padding.")
    seed: int = Field(42, description="Seeds data order, initialisation and dropout; 0 to 2**32 - 1.")
    deterministic: bool = Field(False, description="Use torch's deterministic algorithms (slower).")
    eval_every: StepsOrEpoch = Field("epoch", description='"epoch" or a number of optimizer steps.')
    save_every: StepsOrEpoch = Field("epoch", description='Full training-state checkpoint: "epoch" or a step count.')
    keep_checkpoints: int = Field(2, ge=1, description="Training-state checkpoints kept on disk (oldest removed).")
    metric_for_best: str | None = Field(None, description="Metric that picks the best model; task default if null.")
    greater_is_better: bool | None = Field(None, description="Direction of metric_for_best; inferred if null.")
    early_stopping_patience: int | None = Field(
        None, gt=0, description="Stop after this many evaluations without improvement."
    )
    logging_steps: int = Field(10, gt=0, description="Optimizer steps between progress lines.")
    report_to: list[str] = Field(
        [], description="Experiment trackers that get the training loss, learning rate, throughput and every "
                        "evaluation metric: tensorboard, mlflow, wandb (files under the run's trackers/). "
                        "[] = none: no telemetry, no network.")

    @field_validator("eval_every", "save_every")
    @classmethod
    def _positive_steps(cls, value):
        if isinstance(value, int) and value <= 0:
            raise ValueError('must be "epoch" or a positive number of steps')
        return value

    @field_validator("report_to", mode="before")
    @classmethod
    def _known_trackers(cls, value):
        if isinstance(value, str):  # `--set train.report_to=tensorboard`
            value = [value]
        if not isinstance(value, list):
            return value  # pydantic says what a list should look like
        unknown = [name for name in value if name not in TRACKERS]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} is not a tracker; choose from {', '.join(TRACKERS)}")
        return list(dict.fromkeys(value))  # each tracker once, in the order given

    @field_validator("seed")
    @classmethod
    def _seed_range(cls, value):
        if not 0 <= value <= MAX_SEED:
            raise ValueError(f"must be between 0 and {MAX_SEED} (the seeds torch and numpy accept)")
        return value

    @model_validator(mode="after")
    def _floor_below_peak(self):
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(f"min_learning_rate {self.min_learning_rate:g} is above learning_rate "
                             f"{self.learning_rate:g}; the decay ends at min_learning_rate")
        if self.min_learning_rate and self.lr_scheduler not in ("linear", "cosine"):
            raise ValueError(f"min_learning_rate is where a linear or cosine decay ends; lr_scheduler "
                             f"{self.lr_scheduler} has no such floor: set lr_scheduler: cosine or drop min_learning_rate")
        return self


# Keys that only matter when something is evaluated during training.
NEEDS_VALIDATION = ("eval_every", "metric_for_best", "greater_is_better", "early_stopping_patience")


class ZeroShotConfig(Section):
    """Zero-shot classification with a generative model (`llmctl eval MODEL --recipe R`): each label
    is scored by the model's log-likelihood of its verbalizer after the filled-in template."""

    template: str = Field(description="Prompt per example; {column} names a data column, e.g. 'Review: {sentence}'.")
    verbalizers: dict[str, str] = Field(
        description="Label name -> the word or phrase that answers the prompt, e.g. {negative: ' bad', positive: ' good'}."
    )
    score: Literal["sum", "mean"] = Field(
        "sum", description="Label score: total log-likelihood of the verbalizer's tokens, or their mean."
    )
    num_fewshot: int = Field(
        0, ge=0, description="Labelled examples put before each prompt (each prompt, its verbalizer, the delimiter), "
                             "sampled as lm-evaluation-harness samples them; 0 = zero-shot.")
    fewshot_split: str | None = Field(
        None, description="Split or file the examples come from; null = data.train. Never the split being scored.")
    fewshot_seed: int = Field(1234, ge=0, description="Seed of the example sampler (lm-evaluation-harness's default 1234).")
    fewshot_delimiter: str = Field("\n\n", description="Text after each example (the harness's fewshot_delimiter).")

    @field_validator("template")
    @classmethod
    def _names_columns(cls, value):
        template_columns(value)
        return value

    @field_validator("verbalizers")
    @classmethod
    def _distinct_words(cls, value):
        if len(value) < 2:
            raise ValueError("give one verbalizer per label, at least two labels")
        empty = [label for label, word in value.items() if not word.strip()]
        if empty:
            raise ValueError(f"the verbalizer of {', '.join(map(repr, empty))} is empty")
        if len(set(value.values())) < len(value):
            raise ValueError("two labels share a verbalizer, so they could never be told apart")
        return value

    def columns(self) -> list[str]:
        return template_columns(self.template)


class PeftConfig(Section):
    """Train a small adapter instead of every weight (LoRA through peft). The run saves only the
    adapter (plus the task head); `llmctl export` merges it into a plain checkpoint."""

    method: Literal["lora", "qlora"] = Field(
        "lora", description="lora, or qlora (4-bit base weights through bitsandbytes; CUDA only).")
    r: int = Field(16, description="Rank of the LoRA update matrices (> 0).")
    alpha: float | None = Field(
        None, gt=0, description="LoRA scaling numerator (update scaled by alpha / r); null = 2 * r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(
        None, description="Linear layers that get an adapter (names or name suffixes); null = the family's "
                          "attention + MLP projections, all-linear = every Linear but the head.")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved with the adapter; null = the task head "
                          "(classifier / score / qa_outputs / classification_head).")
    load_in_4bit: bool = Field(False, description="Same as method: qlora.")

    @field_validator("r")
    @classmethod
    def _positive_rank(cls, value):
        if value <= 0:
            raise ValueError("must be a positive rank, e.g. 8 or 16")
        return value

    @property
    def quantized(self) -> bool:
        return self.method == "qlora" or self.load_in_4bit

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2 * self.r


def template_columns(template: str) -> list[str]:
    """Column names a str.format template uses, in order; ValueError for anything else."""
    import string

    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"{{{name}}} is not a plain column name; use {{column}} with a data column's name")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("names no column; put the text in with {column}, e.g. 'Review: {sentence}'")
    return names


D = TypeVar("D", bound=DataConfig)


class Recipe(Section, Generic[D]):
    task: str = Field(description="classification, ner, qa, seq2seq, causal-lm, masked-lm, multiple-choice, embedding, denoising or preference (see `llmctl recipes list`).")
    model: ModelConfig
    data: D
    train: TrainConfig = Field(default_factory=TrainConfig)
    output_dir: str = Field("runs/run", description="Run directory (never overwritten without --overwrite).")
    zero_shot: ZeroShotConfig | None = Field(
        None, description="Score labels with a generative model's log-likelihood instead of training a head."
    )
    peft: PeftConfig | None = Field(None, description="Train a LoRA adapter instead of every weight (see README, LoRA).")
    distill: DistillConfig | None = Field(
        None, description="Learn from a teacher model's softened outputs too (classification, causal-lm).")
    preference: PreferenceConfig | None = Field(
        None, description="task: preference only: the method (dpo, simpo, orpo) and its settings; null = dpo, beta 0.1.")

    # The file the recipe came from, for messages (set by llmctl.config.load.validate_recipe).
    _source: str = PrivateAttr("<recipe>")

    @model_validator(mode="after")
    def _cross_checks(self):
        if self.data.validation is None:
            # Without validation data nothing is evaluated, so these would be silently ignored.
            unused = [f"train.{k}" for k in NEEDS_VALIDATION
                      if getattr(self.train, k) != TrainConfig.model_fields[k].default]
            if unused:
                resets = " ".join(f"--set {k}={_yaml_value(TrainConfig.model_fields[k.split('.', 1)[1]].default)}"
                                  for k in unused)
                raise ValueError(f"{', '.join(unused)} {'needs' if len(unused) == 1 else 'need'} data.validation, "
                                 f"which is null; set data.validation to a split or file, "
                                 f"or drop {', '.join(unused)} ({resets})")
        if self.distill is not None:
            check_distill(self.task, self.data, self)
        if self.model.init_from is not None and self.peft is not None and self.peft.quantized:
            raise ValueError("model.init_from builds the model from full-precision weights; qlora's 4-bit base "
                             "cannot start from it: use peft.method: lora, or drop model.init_from")
        if self.preference is not None and self.task != "preference":
            raise ValueError(f"the preference section trains task: preference, not {self.task!r}; "
                             "drop it or set task: preference")
        if self.zero_shot is not None:
            check_zero_shot(self.task, self.data, self.zero_shot)
            if self.peft is not None:
                raise ValueError("peft trains an adapter, but zero_shot scores without training; drop one of them")
        if self.peft is not None and self.task == "embedding":
            raise ValueError("peft is not available for task embedding yet; drop the peft section to train every weight")
        return self


def _yaml_value(value) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_zero_shot(task: str, data, zero_shot: ZeroShotConfig) -> None:
    """The template's columns become data.text_columns (or must be among them when given);
    data.label_names, when given, must be the verbalizers' labels."""
    if task != "classification":
        raise ValueError(f"zero_shot works with task: classification, not {task!r}")
    if getattr(data, "regression", None):
        raise ValueError("zero_shot scores labels; it cannot predict a regression target (data.regression)")
    columns = zero_shot.columns()
    if "text_columns" not in data.model_fields_set:
        if len(columns) > 2:
            raise ValueError(f"zero_shot.template names {len(columns)} columns; at most two (a sentence pair) are read")
        data.text_columns = columns
    missing = [c for c in columns if c not in data.text_columns]
    if missing:
        raise ValueError(f"zero_shot.template names column {missing[0]!r}, which is not in data.text_columns "
                         f"{data.text_columns}; add it there or fix the template")
    names = getattr(data, "label_names", None)
    if names is not None and sorted(names) != sorted(zero_shot.verbalizers):
        raise ValueError(f"data.label_names {names} and the zero_shot.verbalizers labels "
                         f"{list(zero_shot.verbalizers)} differ; give every label one verbalizer")
