"""FLAVA's localized patch selection and forget-robust pruning, as pure tensor functions.

Lee et al., FLAVA/STELLA (arXiv 2310.08204), ``models/cl_methods/flava.py`` L72-166 and L312-389:

- candidates ``C``: the top-``keep`` tokens by AVM importance;
- query summary ``qbar = sum_{i in C} I[i] q[i] / sum_{i in C} I[i]`` per head (stored in memory);
- pruning probability of key token ``j`` in the candidates of the other modality:
  ``p[j] = mean_h sigmoid(s_past[h, j] - s_cur[h, j])``, where ``s_cur`` is the importance-weighted mean
  of the current sample's candidate query logits and ``s_past = <qbar_past[h], k[h, j]> / sqrt(dh)`` uses
  the stored summary of ONE replayed sample; ``p = 0`` outside the candidates and with an empty memory;
- video: weighted sampling without replacement ``∝ I_v`` with pruned tokens at weight 0, first ``keep`` kept;
- audio: importance summed over frequency, averaged over ``chunk`` time steps, chunks drawn by weighted
  sampling without replacement and accepted whole (minus pruned tokens) until ``keep`` tokens; the
  boundary chunk is trimmed from the side away from an accepted neighbour (random side if none).

Deliberate difference: the official ``torch.multinomial(w, L)`` over zero-weight entries is undefined
behaviour; here sampling without replacement is an exponential-race top-k (``log w - log E``, ``E ~ Exp(1)``),
which has the same law for positive weights and puts zero-weight (pruned) tokens last, in random order.
"""

from __future__ import annotations

import torch


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``(B, L)`` mask of each row's ``k`` largest scores."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter_(1, scores.topk(k, dim=1).indices, True)


def query_summary(weights: torch.Tensor, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Importance-weighted mean candidate query: ``(B, Nq)``, ``(B, H, Nq, dh)``, ``(B, Nq)`` -> ``(B, H, dh)``."""
    w = weights * candidates
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    return torch.einsum("bq,bhqd->bhd", w, queries)


def prune_probability(
    logits: torch.Tensor,
    weights: torch.Tensor,
    query_candidates: torch.Tensor,
    key_candidates: torch.Tensor,
    keys: torch.Tensor,
    past_summary: torch.Tensor | None,
) -> torch.Tensor:
    """Per-key pruning probability ``(B, Nk)``; zero outside ``key_candidates`` and when ``past_summary`` is None.

    Args:
        logits: current scaled attention logits ``(B, H, Nq, Nk)`` (queries of one modality over keys of the other).
        weights: query importance ``(B, Nq)``.
        query_candidates: ``(B, Nq)`` bool candidate queries.
        key_candidates: ``(B, Nk)`` bool candidate keys.
        keys: current keys ``(B, H, Nk, dh)``.
        past_summary: stored query summary ``(B, H, dh)`` of one replayed sample per current sample, or None.

    """
    if past_summary is None:
        return torch.zeros(key_candidates.shape, dtype=logits.dtype, device=logits.device)
    w = weights * query_candidates
    w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
    s_cur = torch.einsum("bq,bhqk->bhk", w, logits)
    s_past = torch.einsum("bhd,bhkd->bhk", past_summary, keys) * keys.shape[-1] ** -0.5
    return torch.sigmoid(s_past - s_cur).mean(1) * key_candidates


def weighted_order(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation per row, drawn by sampling without replacement with probability ∝ ``weights``.

    Zero-weight entries come after every positive-weight entry (in uniformly random order).
    """
    e = torch.empty(weights.shape, dtype=torch.float64).exponential_(generator=generator).to(weights.device)
    w = weights.double()
    key = torch.where(w > 0, w.clamp_min(1e-300).log() - e.log(), -1e6 - e)
    return key.argsort(dim=1, descending=True)


def select_video(
    weights: torch.Tensor, pruned: torch.Tensor, keep: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``keep`` video token indices per row ``(B, keep)``: weighted sampling without replacement, pruned last."""
    return weighted_order(weights * ~pruned, generator)[:, :keep]


def _chunk_tokens(chunk_id: int, chunk: int, n_time: int, n_freq: int) -> torch.Tensor:
    start, stop = chunk_id * chunk, min(n_time, (chunk_id + 1) * chunk)
    return torch.arange(start * n_freq, stop * n_freq)


def _select_audio_row(
    weights: torch.Tensor, pruned: torch.Tensor, dims: tuple[int, int, int], keep: int, gen: torch.Generator | None
) -> torch.Tensor:
    n_time, n_freq, chunk = dims
    n_chunks = -(-n_time // chunk)
    per_time = (weights * ~pruned).reshape(n_time, n_freq).sum(1)
    padded = torch.cat([per_time, per_time.new_zeros(n_chunks * chunk - n_time)])
    order = weighted_order(padded.reshape(n_chunks, chunk).mean(1, keepdim=True).T, gen)[0].tolist()
    accepted: set[int] = set()
    chosen: list[torch.Tensor] = []
    total = 0
    for c in order:
        tokens = _chunk_tokens(c, chunk, n_time, n_freq)
        tokens = tokens[~pruned[tokens]]
        if total + len(tokens) <= keep:
            accepted.add(c)
            chosen.append(tokens)
            total += len(tokens)
        else:
            need = keep - total
            if c - 1 in accepted:
                from_left = True
            elif c + 1 in accepted:
                from_left = False
            else:
                from_left = bool(torch.rand(1, generator=gen) < 0.5)
            chosen.append(tokens[:need] if from_left else tokens[len(tokens) - need :])
            total = keep
        if total == keep:
            break
    out = torch.cat(chosen) if chosen else torch.empty(0, dtype=torch.long)
    if len(out) < keep:  # more than half pruned cannot happen in FLAVA; fill with pruned tokens to stay exact
        rest = torch.tensor([i for i in range(len(weights)) if i not in set(out.tolist())])
        out = torch.cat([out, rest[: keep - len(out)]])
    return out.sort().values


def select_audio(
    weights: torch.Tensor,
    pruned: torch.Tensor,
    n_time: int,
    n_freq: int,
    chunk: int,
    keep: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``keep`` audio token indices per row ``(B, keep)``, chosen by time chunks (time-major tokens)."""
    rows = [
        _select_audio_row(w.cpu(), p.cpu(), (n_time, n_freq, chunk), keep, generator)
        for w, p in zip(weights, pruned, strict=True)
    ]
    return torch.stack(rows).to(weights.device)
