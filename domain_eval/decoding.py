"""Batched decoding that spends compute only on rows still writing an answer.

``model.generate`` keeps every row of a batch stepping until the slowest row stops and
runs the whole prompt through the model for every row. Evaluation prompts share a long
prefix (system prompt + instruction, 44 of ~77 tokens for the embedded base) and most
answers end long before ``max_new_tokens``. So this loop:

- runs the shared prefix once and repeats its KV cache across the batch;
- drops a row from the batch (and from the KV cache) as soon as it ends: end-of-turn,
  ``max_new_tokens``, or the caller's ``is_complete`` (e.g. enough domains written);
- positions every real token as if its prompt were alone, so padding changes nothing
  but the shapes.

Measured in benchmarks/eval_speed.py against one-at-a-time ``model.generate``.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

IsComplete = Callable[[int, list[int]], bool]  # (row, new tokens so far) -> stop this row now
MayEnd = Callable[[int, list[int]], bool]  # (row, new tokens so far) -> may this row end its turn now
Banned = Callable[[int, list[int]], Iterable[int]]  # (row, new tokens so far) -> token ids it may not write next


@dataclass(frozen=True)
class DecodeSettings:
    """Token-level settings; the sampling ones mean what they mean in ``model.generate``."""

    max_new_tokens: int
    eos_token_id: int
    pad_token_id: int
    greedy: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    share_prefix: bool = True
    min_shared_prefix: int = 8  # below this, a separate prefix pass costs more than it saves


def common_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    first = prompts[0]
    length = min(len(p) for p in prompts)
    for other in prompts[1:]:
        i = 0
        while i < length and other[i] == first[i]:
            i += 1
        length = i
    return length


def _forward_kwargs(model: Any) -> tuple[str, bool]:
    """(name of the KV-cache argument, whether ``logits_to_keep`` exists) for this transformers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return ("cache" if "cache" in params else "past_key_values"), "logits_to_keep" in params


def _apply_repetition_penalty(logits: Any, histories: list[Any], penalty: float) -> Any:
    """``model.generate``'s rule: every token already in the row (prompt included) is penalised."""
    import torch

    logits = logits.clone()
    for batch_row, history in enumerate(histories):
        ids = history.unique().to(logits.device)
        scores = logits[batch_row, ids]
        logits[batch_row, ids] = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits


def _top_p_filter(logits: Any, top_p: float) -> Any:
    import torch

    sorted_logits, order = torch.sort(logits, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)


def _choose(logits: Any, settings: DecodeSettings, generator: Any, alive: list[int]) -> Any:
    import torch

    if settings.greedy:
        return logits.argmax(-1)
    logits = logits / settings.temperature
    if settings.top_p < 1.0:
        logits = _top_p_filter(logits, settings.top_p)
    probs = logits.softmax(-1)
    if isinstance(generator, (list, tuple)):
        # One generator per row: a row's draws depend on its own seed, not on which rows share its batch.
        return torch.cat([torch.multinomial(probs[i], 1, generator=generator[row]) for i, row in enumerate(alive)])
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    settings: DecodeSettings,
    is_complete: IsComplete | None = None,
    generator: Any = None,
    may_end: MayEnd | None = None,
    banned: Banned | None = None,
) -> list[list[int]]:
    """New token ids for each prompt (ending with EOS where the model ended its turn).

    ``generator`` seeds sampling: one ``torch.Generator`` for the batch, or a sequence of them,
    one per prompt, so each row samples the same tokens whatever rows share its batch.
    ``may_end`` vetoes end-of-turn for a row (its EOS logit is masked) until the row's own
    tokens allow it, e.g. until its answer holds enough names. It looks only at that row, so
    greedy output stays the same alone or batched. ``banned`` masks the tokens it names for a
    row, under the same rule: it sees only that row's tokens.
    """
    import torch
    from transformers import DynamicCache

    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("decode needs at least one prompt, and no empty prompt")
    device = next(model.parameters()).device
    cache_arg, has_logits_to_keep = _forward_kwargs(model)
    keep_last = {"logits_to_keep": 1} if has_logits_to_keep else {}
    cache = DynamicCache()
    rows = len(prompts)

    # Every row keeps at least one token after the prefix, so each has a last logit to continue from.
    shared = common_prefix_length(prompts) if settings.share_prefix and rows > 1 else 0
    shared = min(shared, min(len(p) for p in prompts) - 1)
    if shared < settings.min_shared_prefix:
        shared = 0
    if shared:
        prefix = torch.tensor([list(prompts[0][:shared])], device=device)
        with torch.inference_mode():
            model(input_ids=prefix, use_cache=True, **{cache_arg: cache}, **keep_last)
            cache.batch_repeat_interleave(rows)

    # Layout per row: [shared prefix][padding][own suffix]; padding is masked and never positioned.
    suffixes = [list(p[shared:]) for p in prompts]
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((rows, width), settings.pad_token_id, dtype=torch.long)
    mask = torch.zeros((rows, shared + width), dtype=torch.long)
    mask[:, :shared] = 1
    positions = torch.ones((rows, width), dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        start = width - len(suffix)
        input_ids[row, start:] = torch.tensor(suffix)
        mask[row, shared + start :] = 1
        positions[row, start:] = torch.arange(shared, shared + len(suffix))
    next_position = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=device)
    mask = mask.to(device)

    seen = [torch.tensor(list(p), dtype=torch.long) for p in prompts] if settings.repetition_penalty != 1.0 else []
    alive = list(range(rows))  # original row of each batch row
    outputs: list[list[int]] = [[] for _ in range(rows)]
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=positions.to(device),
                       use_cache=True, **{cache_arg: cache}, **keep_last).logits[:, -1, :].float()
        for _ in range(settings.max_new_tokens):
            if seen:
                logits = _apply_repetition_penalty(logits, [seen[r] for r in alive], settings.repetition_penalty)
            if may_end is not None:
                for batch_row, row in enumerate(alive):
                    if not may_end(row, outputs[row]):
                        logits[batch_row, settings.eos_token_id] = float("-inf")
            if banned is not None:
                for batch_row, row in enumerate(alive):
                    ids = list(banned(row, outputs[row]))
                    if ids:
                        logits[batch_row, ids] = float("-inf")
            chosen = _choose(logits, settings, generator, alive)
            survivors: list[int] = []
            for batch_row, token in enumerate(chosen.tolist()):
                row = alive[batch_row]
                outputs[row].append(token)
                if seen:
                    seen[row] = torch.cat([seen[row], torch.tensor([token])])
                finished = (
                    token == settings.eos_token_id
                    or len(outputs[row]) >= settings.max_new_tokens
                    or (is_complete is not None and is_complete(row, outputs[row]))
                )
                if not finished:
                    survivors.append(batch_row)
            if not survivors:
                break
            if len(survivors) < len(alive):
                index = torch.tensor(survivors, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                mask, chosen, next_position = mask[index], chosen[index], next_position[index]
                alive = [alive[r] for r in survivors]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
            logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=next_position[:, None],
                           use_cache=True, **{cache_arg: cache}, **keep_last).logits[:, -1, :].float()
            next_position = next_position + 1
    return outputs
