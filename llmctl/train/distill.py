"""Knowledge distillation on the one loop (recipe section `distill:`).

The loss of a training batch (Hinton et al. 2015, as transformers' research distillation
example and most libraries compute it):

    loss = (1 - alpha) * CE(student, labels) + alpha * T**2 * KL(p_teacher_T || p_student_T)
    p_T  = softmax(logits / T)
    KL(p || q) = sum_i p_i * (log p_i - log q_i)       (the teacher's distribution is p)

CE is the task's own loss (the model's `loss` output, unchanged). The KL is averaged over the
rows of a batch (classification) or over the positions whose next token is learned (causal
LM: the positions CE reads), i.e. torch's KLDivLoss(reduction="batchmean") over those rows.
T**2 keeps the soft term's gradients on the scale of the hard term's as T changes.

distill.hidden_weight = w > 0 (classification) adds Patient KD's term (Sun et al. 2019):

    w * sum over student layers j of || h_s(j) / |h_s(j)| - h_t(I(j)) / |h_t(I(j))| ||^2

averaged over rows, where h is the first token's hidden state after a layer and I maps each
student layer to a teacher layer (distill.hidden_layers). With two labels the teacher's soft
labels say little beyond the hard ones; its hidden states say much more.

Large vocabularies (causal LM, distill.top_k = k): the teacher keeps, per position, its k
most likely tokens at temperature T and the rest of its probability as one bucket. The KL is
then taken over k + 1 outcomes: those k tokens, and "any other token" whose student
probability is the student's mass outside the k (computed exactly, by a log-sum-exp over
the other tokens). That is the KL of the two distributions coarsened to those outcomes, a
lower bound of the full KL equal to it when the teacher's tail is empty (top_k: null keeps
the whole vocabulary).

The teacher runs once: its outputs for the training features (classification: the raw logits
per row; causal LM: top-k log-probabilities at T per learned position) are stored as an entry
of the feature cache, keyed by the features' sha256, the teacher's weight files, the kind,
top_k and T (causal LM only); a later epoch reads them by row index and a rerun finds them in
the cache. With data.cache: false (or Hub data) they are computed once per run and kept in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("llmctl")


# -- the loss ---------------------------------------------------------------------------------
def kl_to_teacher(student_logits, teacher_logp, temperature: float, teacher_ids=None, teacher_rest=None):
    """Mean over rows of KL(p_teacher || softmax(student_logits / T)).

    student_logits: [n, V]. teacher_logp: [n, V] (the teacher's log_softmax(z / T)) or, with
    teacher_ids [n, k], its log-probabilities of those k tokens; teacher_rest [n] then holds the
    log of the teacher's remaining mass (-inf when none)."""
    import torch

    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    if teacher_ids is None:
        terms = torch.where(teacher_logp > -float("inf"), teacher_logp.exp() * (teacher_logp - student_logp), 0.0)
        return terms.sum(-1).mean()
    ids = teacher_ids.long()
    picked = student_logp.gather(-1, ids)
    outside = torch.logsumexp(student_logp.scatter(-1, ids, -float("inf")), dim=-1)  # log of the other tokens' mass
    known = (teacher_logp.exp() * (teacher_logp - picked)).sum(-1)
    rest = torch.where(teacher_rest > -float("inf"), teacher_rest.exp() * (teacher_rest - outside), 0.0)
    return (known + rest).mean()


def mix(task_loss, kl, alpha: float, temperature: float):
    """(1 - alpha) * task CE + alpha * T**2 * KL. With alpha 0 this is task_loss exactly (1.0 * x
    and x + 0.0 are exact), so its gradients are plain fine-tuning's, bit for bit."""
    return (1.0 - alpha) * task_loss + (alpha * temperature * temperature) * kl


def hidden_distance(student_hidden, teacher_hidden):
    """Patient KD's term for a batch: [rows, layers, width] each; squared distance of the unit
    vectors, summed over layers, averaged over rows."""
    import torch

    unit = torch.nn.functional.normalize
    return (unit(student_hidden.float(), dim=-1) - unit(teacher_hidden, dim=-1)).pow(2).sum(-1).sum(-1).mean()


def learned_positions(labels):
    """[batch, length] bool: position t predicts token t + 1, which has a label (as ForCausalLMLoss reads it)."""
    import torch

    return torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].ne(-100)


@dataclass
class Distiller:
    """The loop's loss for a distilled run: the task's CE mixed with the KL to the cached teacher."""

    kind: str  # "sequence" (a row's logits) or "tokens" (a causal LM's learned positions)
    targets: object  # llmctl.data.features.Features of the teacher's outputs, rows as the training features
    alpha: float
    temperature: float
    info: dict | None = None  # for metrics.json: the teacher and where its outputs came from
    hidden_weight: float = 0.0  # > 0: targets also hold "hidden", the teacher's matched layers

    def loss(self, model, inputs: dict, index):
        outputs = model(**inputs, **({"output_hidden_states": True} if self.hidden_weight else {}))
        loss = mix(outputs.loss, self.kl(outputs.logits, inputs, index), self.alpha, self.temperature)
        if not self.hidden_weight:
            return loss
        import numpy as np
        import torch

        rows = [int(i) for i in index]
        teacher = torch.from_numpy(np.asarray(self.targets.columns["hidden"][rows], dtype=np.float32))
        student = torch.stack([h[:, 0] for h in outputs.hidden_states[1:]], dim=1)  # [0] is the embeddings
        return loss + self.hidden_weight * hidden_distance(student, teacher.to(student.device))

    def kl(self, logits, inputs: dict, index):
        import numpy as np
        import torch

        rows = [int(i) for i in index]
        cols = self.targets.columns
        if self.kind == "sequence":
            teacher = torch.from_numpy(np.asarray(cols["logits"][rows], dtype=np.float32)).to(logits.device)
            return kl_to_teacher(logits, torch.log_softmax(teacher / self.temperature, -1), self.temperature)
        if logits.dim() == 3:  # the stock forward: every position; else only the learned ones (speedups)
            logits = logits.reshape(-1, logits.shape[-1])[learned_positions(inputs["labels"]).reshape(-1)]

        def gather(name: str):
            return torch.from_numpy(np.concatenate([np.asarray(cols[name][r]) for r in rows])).to(logits.device)

        ids, logp, rest = gather("ids"), gather("logp"), gather("rest")
        if logits.shape[0] == 0:  # no learned token in this batch: nothing to match
            return logits.sum() * 0.0
        if ids.shape[0] != logits.shape[0]:
            raise RuntimeError(f"distill: {logits.shape[0]} learned positions in the batch but {ids.shape[0]} "
                               "cached teacher positions; clear the cache (`llmctl cache clear`) and rerun")
        return kl_to_teacher(logits, logp, self.temperature, ids, rest)


# -- the teacher's outputs, computed once ------------------------------------------------------
def teacher_key(task, cfg, features, teacher_dir: Path, layers=None):
    from llmctl import __version__
    from llmctl.data.cache import FORMAT, Key
    from llmctl.models.trust import base_digests
    from llmctl.train.fingerprint import features_sha256

    kind = task.distill_targets
    return Key({"format": FORMAT, "llmctl": __version__, "task": task.name, "role": "teacher", "kind": kind,
                "features": features_sha256(features), "teacher": base_digests(str(teacher_dir)) or str(teacher_dir),
                **({"top_k": cfg.top_k, "temperature": cfg.temperature} if kind == "tokens" else {}),
                **({"hidden_layers": list(layers)} if layers else {})})


def teacher_targets(cfg, task, features, tokenizer, teacher_dir: Path, device, use_cache: bool, notes: list[str],
                    layers=None):
    """(the teacher's outputs for every training row, "cache" | "computed"): from the feature
    cache, or computed now (and stored there when `use_cache`). `notes`: what the user should read.
    `layers`: the teacher layers whose first-token hidden states are kept too (distill.hidden_weight)."""
    from llmctl.data import cache

    key = teacher_key(task, cfg, features, teacher_dir, layers) if use_cache else None
    if key is not None:
        found = cache.lookup(key, notes)
        if found is not None:
            notes.append(f"distill: the teacher's outputs for {len(found):,} rows from the cache "
                         f"({cache.entries_dir() / key.digest}); the teacher is not run")
            return found, "cache"
    targets = compute_targets(cfg, task, features, tokenizer, teacher_dir, device, layers)
    notes.append(f"distill: ran the teacher {teacher_dir} once over {len(features):,} training rows"
                 + ("; its outputs are cached for later runs" if key is not None else ""))
    if key is not None and cache.write(key, targets, notes):
        from llmctl.data import store

        return store.load(cache.entries_dir() / key.digest), "computed"
    return targets, "computed"


def compute_targets(cfg, task, features, tokenizer, teacher_dir: Path, device, layers=None):
    """Run the teacher (eval mode, no gradients) over the features in index order."""
    import numpy as np
    import torch

    from llmctl.data.features import Features
    from llmctl.data.store import Ragged
    from llmctl.models.load import auto_class, load_trained
    from llmctl.train.batching import eval_batches
    from llmctl.train.evaluate import to_device

    teacher = load_trained(auto_class(task.auto_model), teacher_dir).to(device).eval()
    n, out = len(features), {}
    counts = []
    # Classification rows are independent: run them in evaluation's length-sorted batches (little
    # padding) and put them back in index order. Causal-LM positions are stored row after row.
    batches = (eval_batches(features.lengths, cfg.batch_size) if task.distill_targets == "sequence"
               else [range(start, min(n, start + cfg.batch_size)) for start in range(0, n, cfg.batch_size)])
    with torch.inference_mode():
        for batch in batches:
            inputs = task.collate(features.rows(batch), tokenizer)
            inputs.pop("index")
            inputs = to_device(inputs, device)
            labels = inputs.pop("labels", None)
            outputs = teacher(**inputs, **({"output_hidden_states": True} if layers else {}))
            logits = outputs.logits.float()
            if task.distill_targets == "sequence":
                out.setdefault("logits", []).append(logits.cpu().numpy())
                if layers:
                    hidden = torch.stack([outputs.hidden_states[i][:, 0] for i in layers], dim=1)
                    out.setdefault("hidden", []).append(hidden.float().cpu().numpy())
                continue
            mask = learned_positions(labels)
            counts += mask.sum(-1).tolist()
            logp = torch.log_softmax(logits[mask] / cfg.temperature, dim=-1)
            k = logp.shape[-1] if cfg.top_k is None else min(cfg.top_k, logp.shape[-1])
            top, ids = logp.topk(k, dim=-1)
            rest = torch.logsumexp(logp.scatter(-1, ids, -float("inf")), dim=-1)
            for name, value in (("logp", top), ("ids", ids.int()), ("rest", rest)):
                out.setdefault(name, []).append(value.cpu().numpy())
    del teacher
    if task.distill_targets == "sequence":
        back = np.empty(n, dtype=np.int64)
        back[[i for batch in batches for i in batch]] = np.arange(n)
        columns = {name: np.concatenate(parts).astype(np.float32)[back] for name, parts in out.items()}
        return Features(columns, np.ones(n, dtype=np.int32), {"kind": "sequence"})
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    columns = {name: Ragged(np.concatenate(parts), offsets) for name, parts in out.items()}
    return Features(columns, np.asarray(counts, dtype=np.int32), {"kind": "tokens", "top_k": cfg.top_k})
