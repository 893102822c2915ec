"""Continuous batched decoding of a transformers causal LM, for the frozen players on a CPU.

``model.generate`` keeps every row of a batch until its longest answer ends: on the FC model's
answers (~43 new tokens, a few running to the 128-token cap) most of a batch's decode steps
compute rows that are already done, and every step reads all the weights from memory whatever
the number of rows. Here a row leaves the batch at its stop token, and waiting prompts take
the freed places (prefilled together, their cache left-padded to the batch's width), so the
batch stays full until the queue runs dry. ``transformers``' own continuous batching
(``generate_batch``) runs at half ``generate``'s speed on this kind of CPU (docs/BENCHMARKS.md).

A greedy answer equals ``generate``'s up to bf16 rounding, which depends on the rows a matmul
sees together: padding and finished rows never reach an attention score (their mask is 0).
Sampling applies transformers' own temperature, top-k and top-p warpers, in ``generate``'s
order, and draws from torch's global generator (the caller seeds and forks it).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicLayer

PromptIds = list[int]


@dataclass
class _Rows:
    """The rows decoding together: their cache, its attention mask, and each row's next-token logits."""

    prompts: list[int]  # [B] positions in the caller's prompt list
    new_tokens: list[list[int]]  # [B][T]
    cache: Any  # a DynamicCache over [B, L]
    mask: torch.Tensor  # [B, L]: 1 for the row's tokens, 0 for its left padding
    logits: torch.Tensor  # [B, V]: the next token's logits
    live: list[bool]  # [B]: False once the row's answer has ended (it leaves at the next cut)


def left_padded(prompts: list[PromptIds], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)``, both ``[B, L]``: each prompt at the right end of its row."""
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        mask[row, width - len(ids):] = 1
    return input_ids, mask


def token_picker(temperature: float, top_p: float, top_k: int) -> Any:
    """``[B, V]`` logits -> ``[B]`` token ids: argmax when ``temperature == 0``, else a draw after
    transformers' warpers (top_k 0: none)."""
    if temperature == 0:
        return lambda logits: logits.argmax(-1)
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))

    def pick(logits: torch.Tensor) -> torch.Tensor:
        scores = warpers(None, logits.float())  # these warpers never read the input ids
        return torch.multinomial(scores.softmax(-1), num_samples=1).squeeze(-1)

    return pick


def growing_cache(config: Any) -> tuple[Any, bool]:
    """A DynamicCache for ``config`` and whether rows can join it while it runs: with every layer
    a plain full-length one, they become :class:`GrowingLayer` s, which can be cut and padded
    here (a sliding-window or recurrent layer is left as it is; such a model decodes its rows
    in waves, still dropping each row at its stop)."""
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=config)
    except TypeError:  # a transformers whose caches make their layers as they go
        return DynamicCache(), False
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return cache, False
    cache.layers = [GrowingLayer() for _ in layers]
    return cache, True


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of buffers with room for ``HEADROOM`` more
    tokens: a decode step writes its token in place, where DynamicLayer copies the whole cache
    (``torch.cat``) every step. Assigning ``keys``/``values`` (a cut, a merge) leaves the buffers
    behind; the next update makes new ones."""

    HEADROOM = 64

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:  # what lazy_initialization does, whose arguments vary by version
            self.dtype, self.device = key_states.dtype, key_states.device
            self.keys, self.values = key_states[:, :, :0], value_states[:, :, :0]
            self.is_initialized = True
        self.keys, self._key_room = _append(self.keys, getattr(self, "_key_room", None), key_states)
        self.values, self._value_room = _append(self.values, getattr(self, "_value_room", None), value_states)
        return self.keys, self.values


def _append(cached: torch.Tensor, room: torch.Tensor | None, new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cached`` [B, H, L, D] + ``new`` [B, H, n, D] as a view of ``room`` (a new one when
    ``cached`` is no longer its head or it is full)."""
    length = cached.shape[-2] if cached.numel() else 0
    fits = (room is not None and cached.numel() and cached.data_ptr() == room.data_ptr()
            and cached.shape[:2] == room.shape[:2] and length + new.shape[-2] <= room.shape[-2])
    if not fits:
        batch, heads, _, dim = new.shape
        room = new.new_empty((batch, heads, length + new.shape[-2] + GrowingLayer.HEADROOM, dim))
        if length:
            room[:, :, :length] = cached
    room[:, :, length:length + new.shape[-2]] = new
    return room[:, :, :length + new.shape[-2]], room


class ContinuousDecoder:
    """Decodes prompts ``batch_size`` rows at a time; see the module docstring.

    ``stop_ids`` end an answer (the stop token is kept in its new tokens), ``pad_id`` fills the
    left padding of a prefill.
    """

    def __init__(self, model: Any, batch_size: int, stop_ids: frozenset[int], pad_id: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self.stop_ids = torch.tensor(sorted(stop_ids), dtype=torch.long, device=self.device)
        self.pad_id = pad_id
        self.refill = True  # until a cache says its layers cannot be padded
        # Refill once a quarter of the places are free: a prefill of a few rows reads the weights
        # once for their hundreds of prompt tokens, and the merge copies the cache.
        self.refill_at = max(1, batch_size // 4)
        # transformers 5.25 renamed the forward's past_key_values to cache (the old name goes in 5.40)
        self.cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @torch.inference_mode()
    def decode(self, prompts: list[PromptIds], max_new_tokens: int, pick: Any) -> Iterator[tuple[int, list[int]]]:
        """Yields ``(prompt position, new token ids)`` as each answer ends (not in input order)."""
        waiting = deque(range(len(prompts)))
        rows: _Rows | None = None
        while waiting or rows is not None:
            free = self.batch_size - (len(rows.prompts) if rows else 0)
            if waiting and (rows is None or (self.refill and free >= self.refill_at)):
                admitted = [waiting.popleft() for _ in range(min(free, len(waiting)))]
                rows = self._merge(rows, self._prefill(admitted, [prompts[i] for i in admitted]))
            # 1. every live row takes its next token, and yields its answer at a stop; 2. once a
            # quarter of the rows are done (or places can be refilled), they leave the batch:
            # cutting rows out copies the whole cache, so a done row is carried a few steps
            # rather than cut at once; 3. the rest step once.
            tokens = pick(rows.logits)  # [B]
            stopped = torch.isin(tokens, self.stop_ids).tolist()
            for row, token in enumerate(tokens.tolist()):
                if rows.live[row]:
                    rows.new_tokens[row].append(token)
                    if stopped[row] or len(rows.new_tokens[row]) >= max_new_tokens:
                        rows.live[row] = False
                        yield rows.prompts[row], rows.new_tokens[row]
            done, live = rows.live.count(False), rows.live.count(True)
            refillable = waiting and self.refill and self.batch_size - live >= self.refill_at
            if done and (refillable or done >= max(1, len(rows.live) // 4) or not live):
                rows, tokens = self._keep(rows, tokens)
            if rows is not None:
                rows.mask = torch.cat([rows.mask, rows.mask.new_ones((len(rows.prompts), 1))], dim=-1)
                output = self.model(input_ids=tokens[:, None], attention_mask=rows.mask,
                                    position_ids=rows.mask.sum(-1, keepdim=True) - 1,
                                    use_cache=True, **{self.cache_argument: rows.cache})
                rows.logits = output.logits[:, -1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _prefill(self, prompt_positions: list[int], prompts: list[PromptIds]) -> _Rows:
        """The rows of ``prompts``, each identical prompt computed once (k samples of one request)
        and its cache copied into its rows."""
        distinct: dict[tuple[int, ...], int] = {}
        slots = [distinct.setdefault(tuple(ids), len(distinct)) for ids in prompts]
        input_ids, mask = (t.to(self.device) for t in left_padded(list(distinct), self.pad_id))  # [U, L]
        cache, can_refill = growing_cache(self.model.config)
        output = self.model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                            use_cache=True, logits_to_keep=1, **{self.cache_argument: cache})
        self.refill = self.refill and can_refill
        logits = output.logits[:, -1]  # [U, V]
        if len(distinct) < len(prompts):
            rows = torch.tensor(slots, device=self.device)
            cache.batch_select_indices(rows)
            mask, logits = mask[rows], logits[rows]  # [B, L], [B, V]
        return _Rows(prompt_positions, [[] for _ in prompts], cache, mask, logits, [True] * len(prompts))

    @staticmethod
    def _keep(rows: _Rows, tokens: torch.Tensor) -> tuple[_Rows | None, torch.Tensor]:
        """The live rows and their next input ``tokens``; columns that are padding in every
        kept row are cut from the left. No rows when none is live."""
        keep = [row for row, live in enumerate(rows.live) if live]
        if not keep:
            return None, tokens
        rows.prompts = [rows.prompts[i] for i in keep]
        rows.new_tokens = [rows.new_tokens[i] for i in keep]
        rows.live = [True] * len(keep)
        keep_rows = torch.tensor(keep, device=tokens.device)
        rows.cache.batch_select_indices(keep_rows)
        rows.mask, tokens = rows.mask[keep_rows], tokens[keep_rows]
        start = int(rows.mask.any(0).long().argmax())
        if start > 0:
            rows.mask = rows.mask[:, start:]
            for layer in rows.cache.layers:
                layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
        return rows, tokens

    @staticmethod
    def _merge(rows: _Rows | None, joining: _Rows) -> _Rows:
        """One batch of ``rows`` and the ``joining`` rows, the narrower cache padded on the left."""
        if rows is None:
            return joining
        width = max(rows.mask.shape[1], joining.mask.shape[1])

        def pad(tensor: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            missing = width - tensor.shape[-dim_from_end]
            return F.pad(tensor, (0, 0) * (dim_from_end - 1) + (missing, 0)) if missing else tensor

        for layer, new in zip(rows.cache.layers, joining.cache.layers):
            layer.keys = torch.cat([pad(layer.keys, 2), pad(new.keys, 2)])  # [B, H, L, D]
            layer.values = torch.cat([pad(layer.values, 2), pad(new.values, 2)])
        rows.mask = torch.cat([pad(rows.mask, 1), pad(joining.mask, 1)])  # [B, L]
        rows.prompts += joining.prompts
        rows.new_tokens += joining.new_tokens
        rows.live += joining.live
        rows.logits = torch.cat([rows.logits, joining.logits])
        return rows
