"""Train only the word-embedding rows of tokens the training data contains.

A token that never occurs in the training inputs never gets an embedding gradient, so
under AdamW its row sees a zero gradient and zero moments at every step: the update is
just the weight decay, p *= 1 - lr * wd. Yet a dense embedding gradient makes every step
zero-fill, clip and AdamW-update all 30,522 x 384 rows of a BERT vocabulary, about a
tenth of a MiniLM step on 2 CPU cores, when SST-2 uses about a quarter of them.

SeenRowsEmbedding keeps the full table as a frozen weight and trains a small parameter
holding only the seen rows; an optimizer hook applies the decay to the rest. The
result is the same AdamW update. `state_dict()` shows the usual `weight` (the merged
table) and loading one splits it again, so checkpoints and `save_pretrained` output are
plain transformers weights. Only used where the input embedding is nothing else: no
tied output layer, no encoder-decoder sharing it with the decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class SeenRowsEmbedding(torch.nn.Embedding):
    """An nn.Embedding whose trainable part is `trained`, the rows listed in `rows`."""

    def __init__(self, source: torch.nn.Embedding, rows: torch.Tensor):
        super().__init__(source.num_embeddings, source.embedding_dim, padding_idx=source.padding_idx,
                         _weight=source.weight.detach(), _freeze=True, device=source.weight.device)
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.weight.device).unique()
        local = torch.full((self.num_embeddings,), -1, dtype=torch.long, device=rows.device)
        local[rows] = torch.arange(len(rows), device=rows.device)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("local", local, persistent=False)
        self.trained = torch.nn.Parameter(self.weight.detach()[rows].clone())
        # nn.Embedding's padding_idx (a row that never gets a gradient), as a trained-row index
        pad = -1 if self.padding_idx is None else int(local[self.padding_idx])
        self.local_padding_idx = pad if pad >= 0 else None
        self.register_state_dict_post_hook(_merge_rows)
        self.register_load_state_dict_pre_hook(_split_rows)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        local = self.local[ids]
        unseen = local < 0
        if not bool(unseen.any()):
            return F.embedding(local, self.trained, padding_idx=self.local_padding_idx)
        if self.training:  # rows come from every training input, so this is a bug, not data
            raise RuntimeError(f"token ids {ids[unseen].unique()[:5].tolist()} are not among the trained rows")
        seen = F.embedding(local.clamp(min=0), self.trained)
        return torch.where(unseen.unsqueeze(-1), F.embedding(ids, self.weight), seen)

    def merged(self) -> torch.Tensor:
        table = self.weight.detach().clone()
        table[self.rows] = self.trained.detach()
        return table


def _merge_rows(module, state_dict, prefix, local_metadata):
    state_dict[prefix + "weight"] = module.merged()
    state_dict.pop(prefix + "trained", None)


def _split_rows(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    key = prefix + "weight"
    if key in state_dict and prefix + "trained" not in state_dict:
        state_dict[prefix + "trained"] = state_dict[key].to(module.rows.device)[module.rows]


def seen_token_ids(columns: dict, extra=()) -> torch.Tensor:
    """Every token id in the features' `input_ids` (and `*_input_ids`: a preference pair's prompt,
    chosen and rejected), plus `extra` (pad ids the collator adds)."""
    import numpy as np

    from llmctl.data.store import Ragged, blocks

    flat = np.zeros(0, np.int64)
    for name, ids in columns.items():
        if not (name == "input_ids" or name.endswith("_input_ids")):
            continue
        if isinstance(ids, Ragged):  # block by block: np.unique of all 100M ids would sort a copy of them
            for block in blocks(ids.values):
                flat = np.union1d(flat, np.unique(block))
        elif len(ids):
            flat = np.union1d(flat, np.fromiter((t for row in ids for t in row), dtype=np.int64))
    extra = np.asarray([e for e in extra if e is not None and e >= 0], dtype=np.int64)
    return torch.from_numpy(np.unique(np.concatenate([flat, extra])))


def train_seen_rows_only(model, token_ids: torch.Tensor) -> SeenRowsEmbedding | None:
    """Swap the model's input embedding for a SeenRowsEmbedding; None when it is not safe.

    Call before building the optimizer (it must see the new parameter), then
    `decay_unseen_rows(optimizer, embedding)`.
    """
    config = getattr(model, "config", None)
    embedding = model.get_input_embeddings()
    if (type(embedding) is not torch.nn.Embedding or not embedding.weight.requires_grad
            or model.get_output_embeddings() is not None or getattr(config, "is_encoder_decoder", False)
            or len(token_ids) == 0 or int(token_ids.max()) >= embedding.num_embeddings):
        return None
    if embedding.padding_idx is not None:
        token_ids = torch.cat([token_ids, torch.tensor([embedding.padding_idx])])
    seen = SeenRowsEmbedding(embedding, token_ids)
    model.set_input_embeddings(seen)
    return seen


def decay_unseen_rows(optimizer, embedding: SeenRowsEmbedding) -> None:
    """After each optimizer step, give the untrained rows AdamW's update for a zero gradient.

    That update is p *= 1 - lr * wd with the step's learning rate; nothing at all when the
    group has no weight decay. A step the optimizer skipped (fp16 overflow) decays nothing.
    """
    group = next(g for g in optimizer.param_groups if any(p is embedding.trained for p in g["params"]))
    before = {}

    def steps() -> float:
        step = optimizer.state.get(embedding.trained, {}).get("step", 0)
        return float(step)

    def pre(opt, args, kwargs):
        before["step"] = steps()

    def post(opt, args, kwargs):
        if group["weight_decay"] and steps() > before["step"]:
            # The trained rows' copies in `weight` are stale and unused; decaying the whole
            # table in one pass is cheaper than gathering the untrained rows.
            embedding.weight.mul_(1.0 - group["lr"] * group["weight_decay"])

    optimizer.register_step_pre_hook(pre)
    optimizer.register_step_post_hook(post)
