"""The running batch: one forward pass per decoding step over every active sequence.

Decoder-only models keep one key/value cache for the whole batch, each row left-padded to the
longest; a new sequence is prefilled alone (exactly what `generate` computes for it) and its
cache spliced in, a finished or abandoned one is cut out, and columns that only hold padding are
dropped. Padded positions are masked and each row gets its own position ids, so a row's tokens do
not depend on its neighbours (in fp32 up to rounding far below any greedy choice on the tiny
and real models tested; in bf16 near-ties can flip, as with `generate --batch-size`).

Encoder-decoder models (T5) batch the same way (Seq2SeqBatch: encoder outputs right-padded, the
decoder's cache left-padded). Sliding-window layers (Mistral, Gemma 2/3, Qwen2 with its window on)
batch too: such a layer keeps the last `window - 1` columns of the padded batch, and as every row is
left-padded, those columns are each row's own last tokens, as `generate` keeps them for a batch.
Caches of any other kind (chunked attention, whose chunks start at absolute positions that padding
would move; linear-attention state; layers sharing another's keys) step each sequence with its own
cache in the same loop (CausalRows): they join and leave at every step too, one forward pass each.
"""

from __future__ import annotations

from llmctl.serve.cache import cut, layer_types, roomy_cache
from llmctl.serve.prefill import groups, packable, packed

SPLICEABLE = ("full_attention", "sliding_attention")


def spliceable_cache(model) -> bool:
    """Whether every layer of the model's cache keeps keys and values per column of the padded
    batch (full attention: all of them; sliding window: the last `window - 1`), which the batch
    can pad, splice and cut."""
    return all(kind in SPLICEABLE for kind in layer_types(model))


class CausalBatch:
    def __init__(self, model, device: str):
        self.model, self.device = model, device
        self.rows: list = []  # Sequence per batch row
        self.cache = None  # DynamicCache over all rows
        self.mask = None  # (rows, cache length) 1 = real token
        self.packable = packable(model)  # whether joining prompts share a prefill pass

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, seqs: list) -> list[int]:
        """Prefill the joining prompts, pick each one's first token, splice their caches into the
        batch. A lone prompt is prefilled alone (what `generate` computes); several are packed into
        one pass where the model allows (serve/prefill.py). Returns the prompts per forward pass."""
        import torch

        passes = []
        for group in groups(seqs) if self.packable else [[seq] for seq in seqs]:
            cache = roomy_cache(self.model.config)
            if len(group) > 1:
                cache, mask = packed(self.model, group, cache, self.device)
            else:
                ids = torch.tensor([group[0].prompt], device=self.device)
                out = self.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
                group[0].pick(out.logits[0, -1].float())
                cache, mask = out.cache, torch.ones_like(ids)
            self._splice(group, cache, mask)
            passes.append(len(group))
        return passes

    def _splice(self, seqs: list, cache, mask) -> None:
        import torch

        if self.cache is None:
            self.cache, self.mask, self.rows = cache, mask, list(seqs)
            return
        have, new = self.mask.shape[1], mask.shape[1]
        width = max(have, new)
        for mine, theirs in zip(self.cache.layers, cache.layers):
            # Full layers hold every column; a sliding layer its last min(columns, window - 1).
            # Both are right-aligned, so padding each on the left to the wider lines them up.
            columns = max(mine.keys.shape[2], theirs.keys.shape[2])
            mine.keys = torch.cat([_left_pad(mine.keys, columns - mine.keys.shape[2]),
                                   _left_pad(theirs.keys, columns - theirs.keys.shape[2])])
            mine.values = torch.cat([_left_pad(mine.values, columns - mine.values.shape[2]),
                                     _left_pad(theirs.values, columns - theirs.values.shape[2])])
            if hasattr(mine, "cumulative_length"):  # sliding: the batch's length, which places the window
                mine.cumulative_length = width
        self.mask = torch.cat([_left_pad(self.mask, width - have, dim=1), _left_pad(mask, width - new, dim=1)])
        self.rows.extend(seqs)

    def drop(self, keep: list[int]) -> None:
        import torch

        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.mask = self.mask[index]
        self.rows = [self.rows[i] for i in keep]
        lead = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # columns that are padding in every row
        width = self.mask.shape[1]
        self.mask = self.mask[:, lead:]
        for layer in self.cache.layers:
            # A sliding layer holds only the last columns: of the `lead` cut, those it has.
            cut(layer, keep, max(0, lead - (width - layer.keys.shape[2])))
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length = width - lead

    def step(self) -> None:
        """One token for every row."""
        import torch

        last = torch.tensor([[seq.ids[-1]] for seq in self.rows], device=self.device)
        positions = self.mask.sum(1, keepdim=True)
        self.mask = torch.cat([self.mask, torch.ones_like(last)], dim=1)
        out = self.model(input_ids=last, attention_mask=self.mask, position_ids=positions,
                         cache=self.cache, use_cache=True)
        self.cache = out.cache
        logits = out.logits[:, -1].float()
        for row, seq in enumerate(self.rows):
            seq.pick(logits[row])


def _left_pad(tensor, count: int, dim: int = 2, right: bool = False):
    import torch

    if count <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = count
    pad = torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([tensor, pad] if right else [pad, tensor], dim=dim)


class OneByOne:
    """Batches that prefill each joining sequence in a pass of its own."""

    def add(self, seqs: list) -> list[int]:
        for seq in seqs:
            self.add_one(seq)
        return [1] * len(seqs)


class Seq2SeqBatch(OneByOne):
    """T5 and friends, one decoder pass per step for every row: each row's encoder output (and the
    cross-attention keys/values computed from it once) right-padded to the longest prompt and masked;
    the decoder's own cache left-padded as in CausalBatch. T5's attention bias depends only on the
    distance between positions, which left padding does not change."""

    def __init__(self, model, device: str):
        self.model, self.device = model, device
        self.rows: list = []
        self.encoded = None  # (rows, longest prompt, d_model), right-padded
        self.source_mask = None  # (rows, longest prompt) 1 = real token
        self.cache = None  # EncoderDecoderCache over all rows
        self.mask = None  # (rows, decoder length) 1 = real token, left-padded

    def __len__(self) -> int:
        return len(self.rows)

    def add_one(self, seq) -> None:
        """Encode and take the first decoder step alone (what `generate` computes), then splice it in."""
        import torch
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        start = self.model.generation_config.decoder_start_token_id
        if start is None:
            start = self.model.config.decoder_start_token_id
        ids = torch.tensor([seq.prompt], device=self.device)
        encoded = self.model.get_encoder()(input_ids=ids).last_hidden_state
        cache = EncoderDecoderCache(roomy_cache(self.model.config), DynamicCache(config=self.model.config))
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                         decoder_input_ids=torch.tensor([[start]], device=self.device), cache=cache, use_cache=True)
        seq.pick(out.logits[0, -1].float())
        source_mask = torch.ones(1, len(seq.prompt), dtype=torch.long, device=self.device)
        mask = torch.ones(1, 1, dtype=torch.long, device=self.device)
        if self.cache is None:
            self.rows, self.encoded, self.source_mask, self.cache, self.mask = [seq], encoded, source_mask, out.cache, mask
            return
        have, new = self.source_mask.shape[1], source_mask.shape[1]
        self.encoded = torch.cat([_left_pad(self.encoded, new - have, 1, True), _left_pad(encoded, have - new, 1, True)])
        self.source_mask = torch.cat([_left_pad(self.source_mask, new - have, 1, True),
                                      _left_pad(source_mask, have - new, 1, True)])
        for mine, theirs in zip(self.cache.cross_attention_cache.layers, out.cache.cross_attention_cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, new - have, 2, True), _left_pad(theirs.keys, have - new, 2, True)])
            mine.values = torch.cat([_left_pad(mine.values, new - have, 2, True),
                                     _left_pad(theirs.values, have - new, 2, True)])
        have, new = self.mask.shape[1], 1
        for mine, theirs in zip(self.cache.self_attention_cache.layers, out.cache.self_attention_cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, new - have), _left_pad(theirs.keys, have - new)])
            mine.values = torch.cat([_left_pad(mine.values, new - have), _left_pad(theirs.values, have - new)])
        self.mask = torch.cat([self.mask, _left_pad(mask, have - new, dim=1)])
        self.rows.append(seq)

    def drop(self, keep: list[int]) -> None:
        import torch

        if not keep:
            self.rows, self.encoded, self.source_mask, self.cache, self.mask = [], None, None, None, None
            return
        index = torch.tensor(keep, device=self.device)
        self.rows = [self.rows[i] for i in keep]
        self.mask, self.source_mask = self.mask[index], self.source_mask[index]
        lead = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # decoder columns padding in every row
        width = int(self.source_mask.sum(1).max())  # encoder columns past every row's prompt
        self.mask, self.source_mask, self.encoded = self.mask[:, lead:], self.source_mask[:, :width], \
            self.encoded[index, :width]
        for layer in self.cache.self_attention_cache.layers:
            cut(layer, keep, lead)
        for layer in self.cache.cross_attention_cache.layers:
            layer.keys, layer.values = layer.keys[index, :, :width], layer.values[index, :, :width]

    def step(self) -> None:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        last = torch.tensor([[seq.ids[-1]] for seq in self.rows], device=self.device)
        self.mask = torch.cat([self.mask, torch.ones_like(last)], dim=1)
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=self.encoded), attention_mask=self.source_mask,
                         decoder_input_ids=last, decoder_attention_mask=self.mask, cache=self.cache, use_cache=True)
        self.cache = out.cache
        logits = out.logits[:, -1].float()
        for row, seq in enumerate(self.rows):
            seq.pick(logits[row])


class CausalRows(OneByOne):
    """Decoder-only models with a cache the batch cannot splice (chunked attention, linear-attention
    state, shared keys): every row its own cache."""

    def __init__(self, model, device: str):
        self.model, self.device = model, device
        self.rows: list = []
        self.caches: list = []

    def __len__(self) -> int:
        return len(self.rows)

    def add_one(self, seq) -> None:
        import torch

        cache = roomy_cache(self.model.config)
        out = self.model(input_ids=torch.tensor([seq.prompt], device=self.device), cache=cache, use_cache=True,
                         logits_to_keep=1)
        seq.pick(out.logits[0, -1].float())
        self.rows.append(seq)
        self.caches.append(cache)

    def drop(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]
        self.caches = [self.caches[i] for i in keep]

    def step(self) -> None:
        import torch

        for seq, cache in zip(self.rows, self.caches):
            out = self.model(input_ids=torch.tensor([[seq.ids[-1]]], device=self.device), cache=cache, use_cache=True)
            seq.pick(out.logits[0, -1].float())
