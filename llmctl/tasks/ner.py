"""Named-entity recognition (token classification): CoNLL / jsonl / Hub data in, entity spans out.

Tags are IOB2 (`O`, `B-PER`, `I-PER`, ...), checked before any model loads. Words are
split into sub-tokens; the label goes on a word's first sub-token (or on every sub-token
with `label_all_subtokens`). A sentence longer than `max_length` becomes overlapping
windows, and each word's prediction comes from the window where it has the most context.
Scores are entity-level (seqeval, strict IOB2) over words, never over sub-tokens.
The pure-Python parts (reading, tag checks, windows, decoding) live in `ner_utils`; the data keys,
the split and the jsonl / Hub readers in `ner_data`.
"""

from __future__ import annotations

from typing import ClassVar

from llmctl.config.schema import DataConfig
from llmctl.errors import DataError, RecipeError
from llmctl.tasks import ner_utils as nu
from llmctl.tasks.base import Labels, Note, Padding, Task
from llmctl.tasks.ner_data import NerData, NerSplit, check_tags, read_dataset, read_jsonl


class NerTask(Task):
    name: ClassVar[str] = "ner"
    data_config: ClassVar[type[DataConfig]] = NerData
    auto_model: ClassVar[str] = "AutoModelForTokenClassification"
    cacheable_features: ClassVar[bool] = True

    def __init__(self, data_cfg: NerData, labels: Labels | None = None):
        """`labels` None: data.label_names when the recipe gives them, else nothing yet (`fit`)."""
        super().__init__(data_cfg, labels if labels is not None else Labels(tuple(data_cfg.label_names or ())))

    @classmethod
    def from_model(cls, meta: dict, model_config) -> "NerTask":
        data = NerData.model_validate(meta["data"])
        return cls(data, Labels(tuple(model_config.id2label[i] for i in range(model_config.num_labels))))

    # -- data -----------------------------------------------------------------------
    def _format(self, spec: str, role: str) -> str:
        from llmctl.data.sources import looks_like_file

        if self.data_cfg.dataset and not looks_like_file(spec):
            return "hub"  # a split name (e.g. `eval --data ID --split test`), whatever format files have
        if self.data_cfg.format:
            return self.data_cfg.format
        from llmctl.data.inputs import is_multi

        # under any compression (train.jsonl.gz is jsonl); a glob or folder by its first file
        return nu.file_kind(nu.split_files(spec, f"data.{role}")[0] if is_multi(spec) else spec)

    def read_sentences(self, role: str, spec: str, labelled: bool = True) -> tuple[nu.Sentences, list | None]:
        """The split's sentences as the files have them (tags not repaired yet; `llmctl doctor` reads
        them so) up to row_limit, and the class names a hub dataset declares. A glob or folder is its
        files in sorted order, each sentence still located in its own file."""
        cfg, key = self.data_cfg, f"data.{role}"
        fmt, class_names = self._format(spec, role), None
        if fmt == "hub":
            sents, class_names = read_dataset(self.data_cfg, self.labels.names, spec, key, labelled)
        else:
            files = nu.split_files(spec, key)
            if fmt == "conll":
                parts = [nu.read_conll(file, cfg.conll_tag_index, key) for file in files]
            else:
                parts = [read_jsonl(self.data_cfg, self.labels.names, file, key, labelled) for file in files]
            sents = nu.joined(parts, str(spec))
        limit = self.row_limit(role)
        if limit is not None and len(sents.tokens) > limit:
            sents.tokens, sents.tags = sents.tokens[:limit], sents.tags[:limit]
        return sents, class_names

    def load_split(self, role: str, spec: str, labelled: bool = True) -> NerSplit:
        key = f"data.{role}"
        sents, class_names = self.read_sentences(role, spec, labelled)
        if not labelled:
            return NerSplit(where=sents.where, tokens=sents.tokens, tags=None)
        notes = []
        repairs = nu.check_iob2(sents, key)
        if repairs.count:
            many = "entities" if repairs.count > 1 else "entity"
            notes.append(Note(f"{sents.where}: {repairs.count} {many} started with I- (no B- before), first at "
                              f"{repairs.first}; read as B- (IOB2).", warning=True))
        # Training tags are checked against names given up front (recipe, Hub ClassLabel); names
        # learned from the tags themselves (`fit`) hold every one of them.
        names = self.labels.names or (class_names if role == "train" else None)
        if names:
            check_tags(sents, names, key, "is not in the label names" if role == "train" else
                             "was not seen in training")
        elif role != "train":
            raise DataError("No label set known; train first or give data.label_names.")
        return NerSplit(where=sents.where, tokens=sents.tokens, tags=sents.tags,
                        class_names=tuple(class_names) if class_names else None, notes=tuple(notes))

    def fit(self, train_split: NerSplit) -> Labels:
        if self.labels:
            return self.labels
        if train_split.class_names:
            return Labels(train_split.class_names)
        return Labels(tuple(nu.fit_label_names(train_split.tags)))

    # -- model ----------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        names = self.labels.names
        return {"num_labels": len(names), "id2label": dict(enumerate(names)),
                "label2id": {name: i for i, name in enumerate(names)}}

    def tokenizer_kwargs(self) -> dict:
        return {"add_prefix_space": True}  # byte-level BPE (GPT-2, RoBERTa) on pre-split words

    # -- features -------------------------------------------------------------------
    @staticmethod
    def _specials(tokenizer) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after one sequence ([CLS] .. [SEP], .. </s>)."""
        enc = tokenizer(["a"], is_split_into_words=True)
        wids = enc.word_ids()
        first, last = wids.index(0), len(wids) - 1 - wids[::-1].index(0)
        return enc["input_ids"][:first], enc["input_ids"][last + 1:]

    def featurize(self, split: NerSplit, tokenizer, progress=None):
        from llmctl.data.features import Features

        cfg = self.data_cfg
        prefix, suffix = self._specials(tokenizer)
        budget = cfg.max_length - len(prefix) - len(suffix)
        if budget < 1:
            raise RecipeError(f"data.max_length {cfg.max_length} leaves no room for words after "
                              f"{len(prefix) + len(suffix)} special tokens.", "Raise data.max_length.")
        enc = tokenizer(split.tokens, is_split_into_words=True, add_special_tokens=False)
        names = self.labels.names
        lookup = {name: i for i, name in enumerate(names)}
        cont = {}  # B-X id -> I-X id, for sub-tokens after the first with label_all_subtokens
        for i, name in enumerate(names):
            if nu.split_tag(name)[0] == "B" and f"I-{nu.split_tag(name)[1]}" in names:
                cont[i] = names.index(f"I-{nu.split_tag(name)[1]}")
        input_ids, labels, example, first_word, spans = [], [], [], [], []
        split_count = 0
        for i, words in enumerate(split.tokens):
            ids, wids = enc["input_ids"][i], enc.word_ids(i)
            starts, lengths = [0] * len(words), [0] * len(words)
            for pos in range(len(ids) - 1, -1, -1):  # backwards: the first sub-token's position wins
                if wids[pos] is not None:
                    starts[wids[pos]] = pos
                    lengths[wids[pos]] += 1
            windows = nu.plan_windows(lengths, budget, cfg.window_overlap)
            split_count += len(windows) > 1
            for ws, we in windows:
                window_ids, window_spans, window_labels = list(prefix), [], [-100] * len(prefix)
                for w in range(ws, we):
                    n = min(lengths[w], budget)
                    a = len(window_ids)
                    window_ids += ids[starts[w]: starts[w] + n]
                    window_spans.append((a, a + n))
                    if split.tags is not None:
                        tag = lookup[split.tags[i][w]]
                        rest = cont.get(tag, tag) if cfg.label_all_subtokens else -100
                        window_labels += [tag] + [rest] * (n - 1) if n else []
                window_ids += suffix
                window_labels += [-100] * len(suffix)
                if not window_ids:  # an empty sentence with a tokenizer that adds no specials
                    window_ids, window_labels = [tokenizer.pad_token_id], [-100]
                input_ids.append(window_ids)
                labels.append(window_labels)
                example.append(i)
                first_word.append(ws)
                spans.append(window_spans)
        notes = ()
        if split_count:
            notes = (Note(f"{split.where}: {split_count} sentence(s) longer than max_length {cfg.max_length} were "
                          f"split into overlapping windows ({len(input_ids) - len(split.tokens) + split_count} "
                          "windows)."),)
        columns = {"input_ids": input_ids}
        if split.tags is not None:
            columns["labels"] = labels
        meta = {"example": example, "first_word": first_word, "spans": spans}
        return Features(columns=columns, lengths=[len(x) for x in input_ids], meta=meta, notes=notes)

    def padding(self, tokenizer) -> Padding:
        return Padding(sequences={"input_ids": tokenizer.pad_token_id, "labels": -100})

    # -- evaluation -----------------------------------------------------------------
    def outputs_to_keep(self, outputs, batch) -> dict:
        return {"logits": outputs.logits.float()}

    def default_metric(self) -> str:
        return "f1"

    def metric_names(self) -> list[str] | None:
        if not self.labels:
            return None
        types = sorted({tag[2:] for tag in self.labels.names if tag[:2] in ("B-", "I-")})
        per_type = [f"{t}_{m}" for t in types for m in ("precision", "recall", "f1", "number")]
        return ["loss", "precision", "recall", "f1", "accuracy"] + per_type

    def _word_probs(self, kept: dict, features, split: NerSplit):
        """Per-sentence word probabilities [words, labels], stitched from the windows."""
        import numpy as np

        by_example: dict[int, list] = {}
        for f, logits in enumerate(kept["logits"]):
            n = len(features.columns["input_ids"][f])
            z = np.asarray(logits[:n], dtype=np.float64)
            z = np.exp(z - z.max(-1, keepdims=True))
            by_example.setdefault(features.meta["example"][f], []).append(
                (features.meta["first_word"][f], None, z / z.sum(-1, keepdims=True), features.meta["spans"][f]))
        out, names = [], self.labels.names
        for i, words in enumerate(split.tokens):
            probs, seen = nu.stitch(by_example.get(i, []), len(words), len(names), self.data_cfg.label_all_subtokens)
            if "O" in names:
                probs[~seen, names.index("O")] = 1.0  # a word without sub-tokens is outside entities
            out.append(probs)
        return out

    def _decode(self, word_probs) -> list[list[str]]:
        names = list(self.labels.names)
        transitions = nu.allowed_transitions(names)
        return [nu.decode(p, names, self.data_cfg.constrained_decoding, transitions) for p in word_probs]

    def compute_metrics(self, kept: dict, features, split: NerSplit) -> dict[str, float]:
        import numpy as np

        from llmctl import metrics

        out = {}
        if "labels" in features.columns:
            # Exact mean cross-entropy over every labelled sub-token of every window, from the
            # kept logits, so it counts each token once under any number of processes.
            total, count = 0.0, 0
            for f, logits in enumerate(kept["logits"]):
                lab = np.asarray(features.columns["labels"][f])
                keep = lab >= 0
                if keep.any():
                    z = np.asarray(logits[: len(lab)], dtype=np.float64)[keep]
                    m = z.max(-1, keepdims=True)
                    lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[:, 0]
                    total += float((lse - z[np.arange(len(z)), lab[keep]]).sum())
                    count += int(keep.sum())
            out["loss"] = total / max(count, 1)
        predictions = self._decode(self._word_probs(kept, features, split))
        return out | metrics.load("seqeval").compute(predictions=predictions, references=split.tags)

    def diagnostics(self, kept: dict, features, split: NerSplit) -> dict:
        """Entity-level precision, recall, F1 and gold count per entity type (seqeval's
        TYPE_precision ... keys of compute_metrics, grouped by type)."""
        scores = self.compute_metrics(kept, features, split)
        kinds = sorted(key[: -len("_number")] for key in scores if key.endswith("_number"))
        per_entity = {kind: {"precision": float(scores[f"{kind}_precision"]), "recall": float(scores[f"{kind}_recall"]),
                             "f1": float(scores[f"{kind}_f1"]), "number": int(scores[f"{kind}_number"])}
                      for kind in kinds}
        return {"task": self.name, "per_entity": per_entity}

    # -- prediction -----------------------------------------------------------------
    def predict_split(self, rows: list[dict], where: str) -> NerSplit:
        column = self.data_cfg.tokens_column
        tokens, texts, offsets = [], [], []
        for i, row in enumerate(rows):
            words = row.get(column, row.get("tokens"))
            if isinstance(words, list) and all(isinstance(w, str) for w in words):
                tokens.append([w for w in words])
                texts.append(None)
                offsets.append(None)
            elif isinstance(row.get("text"), str):
                words, spans = nu.split_words(row["text"])
                tokens.append(words)
                texts.append(row["text"])
                offsets.append(spans)
            else:
                raise DataError(
                    f"{where} row {i + 1}: give 'text' (a string) or '{column}' (a list of words); "
                    f"fields are: {', '.join(row) or '(none)'}.",
                    "Plain text lines and jsonl rows like {\"text\": \"...\"} or {\"tokens\": [...]} work.",
                )
        empty = [i + 1 for i, words in enumerate(tokens) if any(not w.strip() for w in words)]
        if empty:
            raise DataError(f"{where} row {empty[0]}: a token is empty or only whitespace.")
        return NerSplit(where=where, tokens=tokens, tags=None, texts=texts, offsets=offsets)

    def references(self, split: NerSplit) -> list:
        """Each sentence's gold tags (IOB2, one per word: the row's "tags" are the predicted ones)."""
        return [list(tags) for tags in split.tags]

    def format_predictions(self, kept: dict, features, split: NerSplit) -> list[dict]:
        word_probs = self._word_probs(kept, features, split)
        lookup = {name: i for i, name in enumerate(self.labels.names)}
        out = []
        for i, tags in enumerate(self._decode(word_probs)):
            words = split.tokens[i]
            text, spans = (split.texts[i], split.offsets[i]) if split.texts is not None else (None, None)
            found = []
            for kind, a, b in nu.entities(tags):
                score = float(sum(word_probs[i][w, lookup[tags[w]]] for w in range(a, b)) / (b - a))
                if text is not None:  # character offsets into the input text
                    start, end = spans[a][0], spans[b - 1][1]
                    found.append({"text": text[start:end], "type": kind, "start": start, "end": end,
                                  "score": round(score, 6)})
                else:  # pre-split input: word indices, end exclusive
                    found.append({"text": " ".join(words[a:b]), "type": kind, "start": a, "end": b,
                                  "score": round(score, 6)})
            row = {"text": text} if text is not None else {"tokens": words, "tags": tags}
            out.append(row | {"entities": found})
        return out
