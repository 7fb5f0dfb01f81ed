"""NER building blocks in plain Python and numpy (no torch), unit-testable with hand-made data.

- reading CoNLL files (one token per line, blank line between sentences) with line numbers;
- checking tags against IOB2 (and repairing an entity that starts with I-);
- splitting raw text into words with character offsets;
- planning windows over a sentence longer than the model's max length, and stitching the
  per-word predictions of overlapping windows back together;
- constrained decoding of per-word tag probabilities, and tags -> entity spans.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmctl.errors import DataError

CONLL_SUFFIXES = (".txt", ".conll", ".conll03", ".iob", ".iob2", ".bio", ".tsv")
SPLIT_SUFFIXES = CONLL_SUFFIXES + (".jsonl", ".json", ".parquet", ".csv")  # what a folder split is read from
DOCSTART = "-DOCSTART-"


# -- reading ----------------------------------------------------------------------------
@dataclass
class Sentences:
    """Sentences of one file or split, with where each token came from (for messages)."""

    where: str
    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list] = field(default_factory=list)  # str tags, or int ids before naming
    token_lines: list[list[int]] | None = None  # CoNLL: the line of every token
    row_lines: list[int] | None = None  # jsonl: the line of every sentence
    # A split of several files (a glob or folder): each file's own Sentences and where it starts,
    # so a message names the file a sentence came from, not the pattern.
    files: list["Sentences"] | None = None
    file_starts: list[int] | None = None

    def locate(self, sentence: int, token: int | None = None) -> str:
        """`train.txt:12` (CoNLL), `train.jsonl:3 token 5` or `dataset[split] row 2 token 5`."""
        if self.files:
            k = bisect.bisect_right(self.file_starts, sentence) - 1
            return self.files[k].locate(sentence - self.file_starts[k], token)
        if self.token_lines is not None:
            return f"{self.where}:{self.token_lines[sentence][token or 0]}"
        base = f"{self.where}:{self.row_lines[sentence]}" if self.row_lines is not None else f"{self.where} row {sentence}"
        return base if token is None else f"{base} token {token + 1}"


def joined(parts: list[Sentences], where: str) -> Sentences:
    """The sentences of several files as one split named `where`, each still located in its file."""
    if len(parts) == 1:
        return parts[0]
    out = Sentences(where=where, files=parts, file_starts=[])
    for part in parts:
        out.file_starts.append(len(out.tokens))
        out.tokens.extend(part.tokens)
        out.tags.extend(part.tags)
    return out


def split_files(spec: str, key: str) -> list[Path]:
    """The files of a NER split in reading order: a glob's matches or a folder's CoNLL / jsonl /
    table files, sorted by name; else the one path (whose absence the reader reports)."""
    from llmctl.data.inputs import expand, is_pattern, suffixes

    path = Path(spec).expanduser()
    if is_pattern(spec) or not path.is_dir():
        return expand(spec, key)  # a glob matching nothing: the error every task gives
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and suffixes(p)[0] in SPLIT_SUFFIXES)
    if not files:
        raise DataError(f"{key}: folder {spec} holds no data files.",
                        f"Put {', '.join(SPLIT_SUFFIXES)} files in it (optionally .gz / .bz2 / .xz / .zst).")
    kinds = {file_kind(p) for p in files}
    if len(kinds) > 1:
        raise DataError(f"{key}: {spec} mixes file formats ({', '.join(sorted(kinds))}).",
                        "Give one split files of one format.")
    return files


def file_kind(path: Path | str) -> str:
    """How a NER file reads by its extension (under any compression): jsonl, hub (tables) or conll."""
    from llmctl.data.inputs import suffixes

    suffix = suffixes(path)[0]
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    return "hub" if suffix in (".parquet", ".csv") else "conll"  # tables load through datasets


def read_conll(path: Path, tag_index: int = -1, key: str = "data") -> Sentences:
    """Read a CoNLL-style file: `token ... TAG` per line, blank lines between sentences.

    `-DOCSTART-` lines are skipped (they also end a sentence); trailing blank lines, tabs
    and runs of spaces are fine. Every token line must have as many fields as the first.
    """
    from llmctl.data.sources import read_bytes

    raw = read_bytes(path, key)  # train.txt.gz: decompressed
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(f"{key}: {path}:{line} is not UTF-8 text ({exc.reason}).", "Save the file as UTF-8.") from exc
    out = Sentences(where=str(path), token_lines=[])
    tokens, tags, lines = [], [], []
    width = first_line = None

    def close():
        if tokens:
            out.tokens.append(list(tokens))
            out.tags.append(list(tags))
            out.token_lines.append(list(lines))
            tokens.clear(), tags.clear(), lines.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            close()
            continue
        fields = line.split()  # tabs or runs of spaces alike
        if fields[0] == DOCSTART:
            close()
            continue
        if width is None:
            width, first_line = len(fields), number
            if width < 2:
                raise DataError(
                    f"{key}: {path}:{number}: the line has a token but no tag column ({line.strip()!r}).",
                    "Each line needs `token ... TAG` (whitespace or tab separated).",
                )
            if not -width <= tag_index < width:
                raise DataError(
                    f"{key}: {path}:{number}: data.conll_tag_index {tag_index} is outside the {width} fields of the line.",
                    "Set data.conll_tag_index to the tag's field (0-based; -1 = last).",
                )
        elif len(fields) != width:
            missing = "a missing tag column?" if len(fields) < width else "an extra column?"
            raise DataError(
                f"{key}: {path}:{number}: {len(fields)} field(s) where line {first_line} has {width} ({missing}): "
                f"{line.strip()!r}.",
                "Give every token line the same columns, `token ... TAG`.",
            )
        tokens.append(fields[0])
        tags.append(fields[tag_index])
        lines.append(number)
    close()
    if not out.tokens:
        raise DataError(f"{key}: {path} has no sentences (empty, or only blank and -DOCSTART- lines).",
                        "Give a CoNLL file with one `token TAG` per line and blank lines between sentences.")
    return out


# -- tags -------------------------------------------------------------------------------
_TAG = re.compile(r"^([A-Za-z])-(.+)$")


def split_tag(tag: str) -> tuple[str, str | None]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', None); anything else -> ('?', None)."""
    if tag == "O":
        return "O", None
    m = _TAG.match(tag)
    return (m.group(1).upper(), m.group(2)) if m else ("?", None)


@dataclass
class Repairs:
    """I- tags that started an entity (no B- before them) and were turned into B-."""

    count: int = 0
    first: str | None = None  # location of the first one


def check_iob2(sents: Sentences, key: str = "data") -> Repairs:
    """Validate IOB2 tags in place; an entity starting with I-X becomes B-X (counted).

    Errors (DataError, naming the file and line): a tag that is neither O nor B-/I-TYPE,
    IOBES/BILOU tags (E-, S-, L-, U-), and IOB1 (entities start with I-, B- only between
    two adjacent entities), alone or mixed with IOB2 in the same data.
    """
    repairs, iob2_starts = Repairs(), 0
    first_iob2 = None
    fixes = []
    for s, tags in enumerate(sents.tags):
        prev_prefix, prev_type = "O", None
        for t, tag in enumerate(tags):
            prefix, kind = split_tag(tag)
            if prefix in ("E", "S", "L", "U"):
                raise DataError(
                    f"{key}: {sents.locate(s, t)}: tag {tag!r} belongs to the IOBES/BILOU scheme; "
                    "llmctl reads IOB2 (O, B-TYPE, I-TYPE).",
                    "Convert the data: S-X -> B-X, E-X -> I-X (L-/U- likewise).",
                )
            if prefix not in ("O", "B", "I") or (prefix != "O" and not kind):
                raise DataError(
                    f"{key}: {sents.locate(s, t)}: tag {tag!r} is not IOB2 (O, B-TYPE or I-TYPE).",
                    "Fix the tag, or point data.conll_tag_index at the tag column.",
                )
            if prefix == "I" and (prev_prefix == "O" or prev_type != kind):
                repairs.count += 1
                repairs.first = repairs.first or sents.locate(s, t)
                fixes.append((s, t, "B-" + kind))
            elif prefix == "B" and (prev_prefix == "O" or prev_type != kind):
                iob2_starts += 1
                first_iob2 = first_iob2 or sents.locate(s, t)
            prev_prefix, prev_type = prefix, kind
    if repairs.count and (iob2_starts == 0 or repairs.count > iob2_starts):
        mixed = (f"; yet {iob2_starts} entities start with B- (first at {first_iob2}), so IOB1 and IOB2 are mixed"
                 if iob2_starts else "")
        raise DataError(
            f"{key}: {repairs.first}: {repairs.count} entities start with I- as in IOB1{mixed}; llmctl reads IOB2, "
            "where every entity starts with B-.",
            "Convert the data to IOB2 (an I-X that starts an entity becomes B-X).",
        )
    for s, t, tag in fixes:
        sents.tags[s][t] = tag
    return repairs


def fit_label_names(tag_lists) -> list[str]:
    """Label set from training tags: O first, then B-/I- of every type (both, even if one is unseen)."""
    kinds = sorted({split_tag(tag)[1] for tags in tag_lists for tag in tags} - {None})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


# -- words with offsets -------------------------------------------------------------------
_WORD = re.compile(
    r"(?:[^\W\d_]\.){2,}"  # abbreviations: U.S.  e.g.
    r"|\d+(?:[.,:/]\d+)+"  # numbers and times with separators: 1,000.5  10:30
    r"|[^\W_]+(?:(?:-|['’](?![sS]\b))[^\W_]+)*"  # words: 1996-08-22  O'Neill  don't
    r"|['’][^\W\d_]+"  # a clitic split off as in CoNLL: John 's
    r"|\S"  # any other single character (punctuation, symbols)
)


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of raw text as CoNLL tokenizes (punctuation apart) and their (start, end) offsets."""
    words, offsets = [], []
    for m in _WORD.finditer(text):
        words.append(m.group())
        offsets.append((m.start(), m.end()))
    return words, offsets


# -- windows --------------------------------------------------------------------------------
def plan_windows(word_lengths: list[int], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Split words into windows [start, end) of at most `budget` sub-tokens each.

    Windows end on word boundaries; consecutive windows share up to `overlap` sub-tokens of
    whole words, so every word is seen with context on both sides in some window. A single
    word longer than the budget gets a window of its own (its sub-tokens are cut there).
    """
    n = len(word_lengths)
    if n == 0:
        return [(0, 0)]
    overlap = min(overlap, budget // 2)
    windows, start = [], 0
    while True:
        end, used = start, 0
        while end < n and used + word_lengths[end] <= budget:
            used += word_lengths[end]
            end += 1
        end = max(end, start + 1)
        windows.append((start, end))
        if end >= n:
            return windows
        nxt, shared = end, 0
        while nxt - 1 > start and shared + word_lengths[nxt - 1] <= overlap:
            nxt -= 1
            shared += word_lengths[nxt]
        start = nxt


def stitch(windows: list[tuple[int, int, np.ndarray, list[tuple[int, int]]]], num_words: int,
           num_labels: int, average: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-word probabilities of one sentence from its windows' sub-token probabilities.

    `windows`: (first word, end word, probs [tokens, labels], spans) per window, where
    spans[k] = (start, stop) sub-token positions of word first+k (start == stop: no
    sub-tokens). A word seen by several windows takes the window where it has the most
    context (sub-tokens on its shorter side). Its distribution is its first sub-token's,
    or the mean over its sub-tokens with `average`. Returns (probs [words, labels], seen mask).
    """
    out = np.zeros((num_words, num_labels))
    best = np.full(num_words, -1)
    for first, _end, probs, spans in windows:
        content = [sp for sp in spans if sp[1] > sp[0]]
        if not content:
            continue
        lo, hi = content[0][0], content[-1][1]
        for k, (a, b) in enumerate(spans):
            if b <= a:
                continue
            context = min(a - lo, hi - b)
            w = first + k
            if context > best[w]:
                best[w] = context
                out[w] = probs[a:b].mean(0) if average else probs[a]
    return out, best >= 0


# -- decoding ---------------------------------------------------------------------------------
def allowed_transitions(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(start[j], trans[i, j]) booleans: which tags may open a sentence / follow tag i in IOB2."""
    parts = [split_tag(t) for t in labels]
    start = np.array([p != "I" for p, _ in parts])
    trans = np.ones((len(labels), len(labels)), dtype=bool)
    for j, (pj, kj) in enumerate(parts):
        if pj == "I":
            for i, (pi, ki) in enumerate(parts):
                trans[i, j] = pi in ("B", "I") and ki == kj
    return start, trans


def viterbi(log_probs: np.ndarray, start: np.ndarray, trans: np.ndarray) -> list[int]:
    """The most likely tag sequence whose transitions are all allowed (I-X only after B-X/I-X)."""
    n = len(log_probs)
    if n == 0:
        return []
    penalty = np.where(trans, 0.0, -np.inf)
    score = log_probs[0] + np.where(start, 0.0, -np.inf)
    back = np.zeros((n, log_probs.shape[1]), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + penalty
        back[t] = cand.argmax(0)
        score = cand.max(0) + log_probs[t]
    path = [int(score.argmax())]
    for t in range(n - 1, 0, -1):
        path.append(int(back[t][path[-1]]))
    return path[::-1]


def decode(probs: np.ndarray, labels: list[str], constrained: bool = True, transitions=None) -> list[str]:
    """Tags for one sentence from per-word probabilities [words, labels]."""
    if len(probs) == 0:
        return []
    if not constrained:
        return [labels[i] for i in probs.argmax(-1)]
    start, trans = transitions if transitions is not None else allowed_transitions(labels)
    return [labels[i] for i in viterbi(np.log(np.clip(probs, 1e-12, None)), start, trans)]


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word) spans. B-X opens an entity and I-X continues it; an I-X that
    does not continue an X entity opens one (lenient, as conlleval; never occurs after constrained
    decoding, which only yields valid IOB2)."""
    spans, current = [], None
    for i, tag in enumerate(tags + ["O"]):
        prefix, kind = split_tag(tag)
        if current and (prefix != "I" or kind != current[0]):
            spans.append((current[0], current[1], i))
            current = None
        if prefix in ("B", "I") and current is None:
            current = (kind, i)
    return spans
