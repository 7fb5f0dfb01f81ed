"""Synthetic movie-review sentiment data for the quickstart (no download needed).

Stdlib only: `llmctl` must be able to write the demo dataset before torch or
transformers are imported.  Sentences come from templates + word lists; they are
invented here, not taken from any real review dataset.

Most rows are plain opinions that a small pretrained encoder (e.g. MiniLM) learns in
one short epoch, but no single word gives the label away: every adjective also shows
up with the other label through negation ("was not clever") or a contrast clause
("Although X was dull, Y was superb"), and all the filler text is shared by both classes.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SUBJECTS = ["The movie", "This film", "The plot", "The acting", "The lead performance", "The script",
            "The soundtrack", "The cinematography", "The ending", "The dialogue", "This sequel",
            "The supporting cast", "The director's new feature", "The pacing", "The final act",
            "The animation", "The story", "The humor", "The villain", "The screenplay"]
POSITIVE = ["wonderful", "brilliant", "moving", "charming", "gripping", "delightful", "superb", "clever",
            "heartfelt", "stunning", "hilarious", "touching", "engaging", "beautiful", "memorable",
            "inventive", "thrilling", "excellent", "fantastic", "enjoyable"]
NEGATIVE = ["boring", "awful", "dull", "clumsy", "tedious", "shallow", "predictable", "confusing",
            "lifeless", "sloppy", "forgettable", "painful", "bland", "terrible", "messy", "pointless",
            "disappointing", "tiresome", "weak", "unbearable"]
INTENSIFIERS = ["", "", "really ", "truly ", "quite ", "incredibly ", "genuinely ", "utterly ",
                "surprisingly ", "rather "]
NEGATIONS = ["not", "never", "hardly", "not at all"]
VERBS = {1: ["I loved", "I adored", "I really enjoyed", "I was moved by", "I would happily rewatch",
             "My whole family enjoyed", "I keep recommending"],
         0: ["I hated", "I regretted watching", "I could barely sit through", "I was bored by",
             "I want my money back for", "My whole family disliked", "I fell asleep during"]}
CLOSERS = {1: ["Highly recommended.", "A must-see.", "I would watch it again.", "Worth every minute.",
               "Go see it."],
           0: ["Avoid it.", "A waste of time.", "Skip this one.", "Not worth the ticket.",
               "I want those two hours back."]}
# Neutral context shared by both classes, so length and filler words carry no signal.
FILLERS = ["I watched it on a rainy Sunday afternoon", "my friends dragged me to the late show",
           "it runs just under two hours", "the trailer had promised a tense thriller",
           "the theater was half empty on opening night", "it is set in a small coastal town",
           "I went in knowing almost nothing about it", "the director spent six years making it",
           "we streamed it at home with the kids", "it is based on a novel I read years ago",
           "the story follows two sisters who run a bakery", "the cast includes several newcomers"]
LABELS = {0: "negative", 1: "positive"}


def _opinion(rng: random.Random, label: int, subject: str = "") -> str:
    """One clause whose sentiment is `label`; ~8% of them flip an adjective by negation."""
    subject = subject or rng.choice(SUBJECTS)
    if rng.random() < 0.08:
        adjective = rng.choice(NEGATIVE if label else POSITIVE)  # "not dull" -> positive
        return f"{subject} was {rng.choice(NEGATIONS)} {adjective}"
    adjective = rng.choice(POSITIVE if label else NEGATIVE)
    return f"{subject} was {rng.choice(INTENSIFIERS)}{adjective}"


def _sentence(rng: random.Random, label: int) -> str:
    kind = rng.random()
    if kind < 0.35:  # short: "The script was clever."
        text = _opinion(rng, label) + "."
    elif kind < 0.55:  # verb phrase + context
        text = f"{rng.choice(VERBS[label])} this film, {rng.choice(FILLERS)}."
    elif kind < 0.61:  # contrast: the clause after "but"/"although ..." decides the label
        first, second = rng.sample(SUBJECTS, 2)  # two different aspects of the film
        other = _opinion(rng, 1 - label, first)
        main = _opinion(rng, label, second)
        if rng.random() < 0.5:
            text = f"{other}, but {main[0].lower()}{main[1:]}."
        else:
            text = f"Although {other[0].lower()}{other[1:]}, {main[0].lower()}{main[1:]}."
    else:  # long review: context + opinion(s) + closer
        context = rng.choice(FILLERS)
        if rng.random() < 0.4:
            context += " and " + rng.choice(FILLERS)
        parts = [context[0].upper() + context[1:] + ".", _opinion(rng, label) + "."]
        if rng.random() < 0.5:
            parts.append(_opinion(rng, label) + ".")
        if rng.random() < 0.5:
            parts.append(f"{rng.choice(VERBS[label])} it.")
        parts.append(rng.choice(CLOSERS[label]))
        text = " ".join(parts)
    return text


def _rows(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str]]:
    rows = []
    for i in range(n):
        label = i % 2  # exact balance; the rows are shuffled below
        for _ in range(100):  # unique sentences across all splits (no train/val leakage)
            text = _sentence(rng, label)
            if text not in seen and 4 <= len(text.split()) <= 40:
                break
        seen.add(text)
        rows.append((text, LABELS[label]))
    rng.shuffle(rows)
    return rows


def write_sentiment_dataset(dest_dir: Path, n_train: int = 600, n_validation: int = 200,
                            seed: int = 0) -> dict[str, Path]:
    """Write train.csv / validation.csv (`text,label`) and predict.txt under dest_dir."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    seen: set[str] = set()
    paths = {}
    for split, n in (("train", n_train), ("validation", n_validation)):
        paths[split] = dest_dir / f"{split}.csv"
        with open(paths[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(_rows(rng, n, seen))
    paths["predict"] = dest_dir / "predict.txt"
    paths["predict"].write_text("".join(t + "\n" for t, _ in _rows(rng, 10, seen)), encoding="utf-8")
    return paths


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "data/quickstart")
    for name, path in write_sentiment_dataset(target).items():
        print(f"{name}: {path}")
