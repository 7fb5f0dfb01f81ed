"""`llmctl predict` as a function: rows in (file or stdin), one output dict per row."""

from __future__ import annotations

import json
from pathlib import Path

from llmctl.errors import DataError, UsageError


def read_inputs(source: str) -> tuple[list[dict], str, list[int | None]]:
    """(rows, where, lines) from a jsonl / json / csv / tsv / txt file (gzip / bz2 / xz / zstd
    compressed too), or '-' for stdin (jsonl or plain lines). JSON is read by the training reader's
    rules (llmctl.data.sources): one object per line, or one document holding a list of objects;
    any other shape is refused (exit 3). `lines` is each row's input line (None in a JSON document):
    blank lines are skipped (and counted in a note), so predictions carry it to be matched with
    their inputs."""
    from llmctl.data.inputs import suffixes
    from llmctl.data.sources import json_lines, json_object_line, read_stdin, read_table, read_text

    if source == "-":
        text, where = read_stdin("--input"), "<stdin>"
        if text.lstrip().startswith("["):  # a JSON list of objects
            return _document(text, where)
        suffix = ".jsonl" if text.lstrip().startswith("{") else ".txt"
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            raise DataError(f"--input: {path} is a folder, not a file.",
                            "Give one jsonl, json, csv, tsv or txt file, or - for stdin.")
        if not path.is_file():
            raise DataError(f"--input: file {path} does not exist.", "Give a jsonl, csv, tsv or txt file, or - for stdin.")
        suffix, where = suffixes(path)[0], str(path)  # rows.jsonl.gz reads as jsonl, decompressed
        if suffix in (".csv", ".tsv", ".parquet"):
            frame = read_table(path, "--input")
            first = 2 if suffix != ".parquet" else 1  # csv/tsv: line 1 is the header
            return frame.to_dict(orient="records"), where, list(range(first, first + len(frame)))
        if suffix == ".json" and not json_lines(path, "--input"):
            return _document(read_text(path, "--input", encoding="utf-8-sig"), where)
        text = read_text(path, "--input", encoding="utf-8-sig")
    rows, lines, blank = [], [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            blank += 1
            continue
        if suffix in (".jsonl", ".json"):
            row = json_object_line(line, where, number, '{"sentence": "..."}')
        else:
            row = {"text": line}
        rows.append(row)
        lines.append(number)
    if not rows:
        raise DataError(f"{where} has no inputs.", "Give at least one line of text or one jsonl row.")
    _note_blank(where, blank)
    return rows, where, lines


def _document(text: str, where: str) -> tuple[list[dict], str, list[None]]:
    from llmctl.data.sources import json_document_rows

    rows = json_document_rows(text, where)
    if not rows:
        raise DataError(f"{where} has no inputs.", "Give at least one object in the list.")
    return rows, where, [None] * len(rows)


def _note_blank(where: str, blank: int) -> None:
    if blank:
        from llmctl.console import note

        note(f"skipped {blank} blank line(s) of {where}; each prediction carries its input line number as \"line\".")


def flag_inputs(question: str | None, context: str | None) -> tuple[list[dict], str, list[None]]:
    """One {question, context} row from `predict --question/--context` (question answering models)."""
    if question is None or context is None:
        raise UsageError("--question and --context go together.", "Pass both, or --input FILE|- instead.")
    return [{"question": question, "context": context}], "--question/--context", [None]


def run_predict(model: str, input_: str | None = None, question: str | None = None, context: str | None = None,
                fill_mask: list[str] | None = None, top_k: int | None = None, output: str | None = None,
                batch_size: int = 64, precision: str | None = None, device: str | None = None,
                max_new_tokens: int | None = None, chat: bool = False) -> tuple:
    """`llmctl predict` without Typer: (predictions, the file written or None). The options are
    checked before anything loads; --fill-mask or --top-k fill masks, otherwise the model's own task
    predicts; with `output` the rows are written there as jsonl (atomically)."""
    from llmctl.core.checks import at_least_one, writable_file
    from llmctl.models.precision import check_precision
    from llmctl.runs.files import check_run

    if input_ is not None and (question is not None or context is not None):
        raise UsageError("--input and --question/--context are alternatives.", "Pass one of them.")
    if fill_mask and (input_ is not None or question is not None or context is not None):
        raise UsageError("--fill-mask gives the texts itself.", "Drop --input / --question / --context, or --fill-mask.")
    if input_ is None and question is None and context is None and not fill_mask:
        raise UsageError("Nothing to predict.", "Pass --input FILE|- (or --question and --context for a QA model, "
                                                "--fill-mask TEXT for a masked-LM model).")
    at_least_one(batch_size=batch_size, top_k=top_k, max_new_tokens=max_new_tokens)
    check_precision(precision)
    check_run(model)  # a malformed file in the run: exit 2 naming it, before anything loads
    if output:
        writable_file(output, "--output")
    if fill_mask:
        rows, where, lines = [{"text": t} for t in fill_mask], "--fill-mask", [None] * len(fill_mask)
    else:
        rows, where, lines = read_inputs(input_) if input_ is not None else flag_inputs(question, context)
    task = None  # the model's own
    if fill_mask or top_k is not None:
        # One {"text", "masks": [[{"token", "id", "score"}, ...] per mask], "filled"} per row.
        from llmctl.core.fill_mask import fill_mask_task
        from llmctl.models.saved import find_model_dir

        task = fill_mask_task(find_model_dir(model), top_k or 5)
    predictions = predict(model, rows, where, batch_size=batch_size, device=device, precision=precision,
                          lines=lines, task=task, max_new_tokens=max_new_tokens, chat=chat)
    if not output:
        return predictions, None
    from llmctl.files import write_text_atomic

    target = Path(output).expanduser()  # as writable_file checked it: a quoted ~ is the home folder too
    write_text_atomic(target, "".join(json.dumps(p) + "\n" for p in predictions), "the predictions")
    return predictions, target


def generative_options(task, rows: list[dict], max_new_tokens: int | None, chat: bool) -> tuple:
    """(task, rows) with predict's generation options applied: --max-new-tokens for a generative
    run (causal-lm, seq2seq); for a causal-lm run, plain prompts as user turns of the chat template
    with --chat, or always when the run trained with data.chat_template (said on stderr)."""
    from llmctl.console import note

    if max_new_tokens is not None:
        if "max_new_tokens" not in type(task.data_cfg).model_fields:
            raise UsageError(f"--max-new-tokens is for generative runs (causal-lm, seq2seq); this is a {task.name} run.",
                             "Drop --max-new-tokens.")
        task = task.with_data(task.data_cfg.model_copy(update={"max_new_tokens": max_new_tokens}))
    as_chat = getattr(task, "chat_rows", None)
    if chat and as_chat is None:
        raise UsageError(f"--chat is for causal-lm runs; this is a {task.name} run.", "Drop --chat.")
    if as_chat is not None and (chat or task.data_cfg.chat_template):
        rows, wrapped = as_chat(rows)
        if wrapped:
            why = "--chat" if chat else "the run trained with data.chat_template"
            note(f"predict: {wrapped} plain prompt(s) sent as user turns of the chat template ({why}).")
    return task, rows


def predict(model_path: str, rows: list[dict], where: str, batch_size: int = 64, device: str | None = None,
            precision: str | None = None, lines: list[int | None] | None = None, task=None,
            max_new_tokens: int | None = None, chat: bool = False) -> list[dict]:
    """Run a saved model over rows; outputs keep input order (batches are length-sorted inside) and
    carry their input line as "line" when `lines` gives it. `task`: run this task rather than the
    one the model was trained for (fill-mask on any checkpoint with a masked-LM head)."""
    return Predictor(model_path, batch_size, device, precision, task, max_new_tokens, chat)(rows, where, lines)


class Predictor:
    """A saved task model, loaded once and run over many sets of rows (`llmctl serve` calls it per
    batch of requests). The tokenizer and weights load on the first call, after its rows have been
    checked and featurized, so data errors surface before any weight loads."""

    def __init__(self, model_path: str, batch_size: int = 64, device: str | None = None,
                 precision: str | None = None, task=None, max_new_tokens: int | None = None, chat: bool = False):
        from llmctl.export.onnx_model import check_run_options, is_onnx_export
        from llmctl.models.devices import device_type
        from llmctl.models.quiet import quiet_libraries
        from llmctl.models.saved import find_model_dir
        from llmctl.tasks.restore import task_for_model

        self.model_dir = find_model_dir(model_path)
        self.onnx = is_onnx_export(self.model_dir)  # `llmctl export --format onnx`: onnxruntime, no torch model
        if self.onnx:
            check_run_options(device, precision)
        self.device = "cpu" if self.onnx else device_type(device)
        self.precision, self.batch_size = precision, batch_size
        quiet_libraries()
        self.task = task if task is not None else task_for_model(self.model_dir)[0]
        self.max_new_tokens, self.chat = max_new_tokens, chat
        self.tokenizer = self.model = None

    def _tokenizer(self):
        if self.tokenizer is None:
            from llmctl.config.schema import ModelConfig
            from llmctl.models.load import load_tokenizer

            self.tokenizer = load_tokenizer(ModelConfig(name_or_path=str(self.model_dir)), **self.task.tokenizer_kwargs())
        return self.tokenizer

    def _model(self):
        if self.model is None:
            import contextlib

            import torch

            if self.onnx:
                from llmctl.export.onnx_model import OnnxModel

                self.model = (OnnxModel(self.model_dir), torch.device("cpu"), contextlib.nullcontext)
            else:
                from llmctl.models.load import auto_class, load_trained
                from llmctl.models.precision import inference_precision
                from llmctl.train.accelerator import make_accelerator

                accelerator = make_accelerator(inference_precision(self.precision, self.model_dir, self.device),
                                               self.device)
                model = load_trained(auto_class(self.task.auto_model), self.model_dir).to(accelerator.device).eval()
                self.model = (model, accelerator.device, accelerator.autocast)
        return self.model

    def __call__(self, rows: list[dict], where: str, lines: list[int | None] | None = None) -> list[dict]:
        import torch

        from llmctl.console import tell
        from llmctl.train.batching import eval_batches
        from llmctl.train.evaluate import to_device

        task, rows = generative_options(self.task, rows, self.max_new_tokens, self.chat)
        split = tell(task.predict_split(rows, where))
        tokenizer = self._tokenizer()
        split, cut, budget = task.cut_inputs(split, tokenizer)
        if cut:
            from llmctl.console import note

            note(f"cut {cut} input(s) of {where} to their first {budget:,} characters, more than the model's "
                 "max_length tokens can use (predictions echo the text as cut).")
        features = tell(task.featurize(split, tokenizer))  # before the model: data errors surface first
        model, on, autocast = self._model()
        kept: dict[str, list] = {}
        with torch.inference_mode(), autocast():
            for batch_ids in eval_batches(features.lengths, self.batch_size):
                inputs = task.collate(features.rows(batch_ids), tokenizer)
                index = inputs.pop("index").tolist()
                outputs = task.eval_outputs(model, to_device(inputs, on))
                for name, tensor in task.outputs_to_keep(outputs, inputs).items():
                    store = kept.setdefault(name, [None] * len(features))
                    for row, i in zip(tensor.float().cpu().numpy(), index):
                        store[i] = row
        predictions = task.format_predictions(kept, features, split)
        return [p | {"line": n} if n is not None else p for p, n in zip(predictions, lines or [None] * len(predictions))]
