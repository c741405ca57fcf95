"""Evaluators: after each experience they score the model on every test experience, one row per score matrix.

The loop runs one ``validate`` pass over the test stream (one loader per test experience); the module hands
each batch to the run's evaluator (``update``), then asks it for one row per score (``compute``). Under DDP
every rank sees a disjoint share of each test experience; ``compute`` combines the shares, so every rank
returns the same rows. Evaluators are registered by name and chosen by the model family of a run:

- ``accuracy`` (classifiers): ``acc``, the sample-weighted accuracy of the strategy's prediction rule
  (``strategy.eval_logits``) per test experience, counted with torchmetrics ``SumMetric`` (reduced over ranks);
- ``retrieval`` (audio-video models): zero-shot audio->video and video->audio R@k of the unmasked clip
  embeddings; the queries are test experience ``j``'s pairs, the gallery is every test experience's pairs
  (what FLAVA reports), a gallery item is correct when its ``group`` equals the query's (class level on
  ``av_digits``, where the group is the digit); ``*_inst_R<k>`` count only the query's own pair as correct
  (instance level, the paper's retrieval; the same numbers when every pair is its own group, as in ``cavmae``).
  R@k is :func:`lifelong.metrics.retrieval.retrieval_scores`' CMC top-k (one tie rule for the suite:
  equal similarities rank the lower gallery index first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn
from torchmetrics.aggregation import SumMetric

from lifelong.metrics.retrieval import retrieval_scores
from lifelong.metrics.score_matrices import ACCURACY
from lifelong.registry import Registry


class Evaluator(nn.Module):
    """Base class: collects a ``validate`` pass over the test stream and returns one score row per score name."""

    score_names: list[str]

    def reset(self) -> None:
        """Forget the last pass (called at the start of each ``validate``)."""

    def update(self, model: nn.Module, strategy: Any, batch: Any, experience: int) -> None:
        """Score one batch of test experience ``experience``."""
        raise NotImplementedError

    def compute(self) -> dict[str, list[float]]:
        """Score name -> one value per test experience, identical on every rank."""
        raise NotImplementedError

    def totals(self) -> list[int]:
        """How many test samples the last pass scored per test experience (summed over ranks)."""
        raise NotImplementedError


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator")


@EVALUATORS.register("accuracy")
class AccuracyEvaluator(Evaluator):
    """Sample-weighted accuracy per test experience of ``strategy.eval_logits(model, x, t).argmax(1)``."""

    def __init__(self, n_experiences: int) -> None:
        super().__init__()
        self.score_names = [ACCURACY]
        self.correct = nn.ModuleList([SumMetric() for _ in range(n_experiences)])
        self.total = nn.ModuleList([SumMetric() for _ in range(n_experiences)])

    def _counters(self, index: int) -> tuple[SumMetric, SumMetric]:
        return cast(SumMetric, self.correct[index]), cast(SumMetric, self.total[index])

    def reset(self) -> None:
        for metric in (*self.correct, *self.total):
            metric.reset()

    def update(self, model: nn.Module, strategy: Any, batch: Any, experience: int) -> None:
        x, y, t = batch
        predictions = strategy.eval_logits(model, x, t).argmax(dim=1)
        correct, total = self._counters(experience)
        correct.update((predictions == y).sum())
        total.update(torch.tensor(len(y), device=y.device))

    def compute(self) -> dict[str, list[float]]:
        counts = [self._counters(i) for i in range(len(self.correct))]
        return {ACCURACY: [float(c.compute()) / max(float(n.compute()), 1.0) for c, n in counts]}

    def totals(self) -> list[int]:
        return [int(self._counters(i)[1].compute()) for i in range(len(self.total))]


@EVALUATORS.register("retrieval")
class RetrievalEvaluator(Evaluator):
    """Audio->video and video->audio R@k per test experience (see the module docstring).

    Args:
        n_experiences: number of test experiences.
        ks: the ranks reported (score names ``a2v_R<k>``, ``v2a_R<k>``; the first ``k`` of a2v is the primary).

    """

    def __init__(self, n_experiences: int, ks: Sequence[int] = (1, 5, 10)) -> None:
        super().__init__()
        self.n_experiences, self.ks = n_experiences, tuple(ks)
        levels = ("", "_inst")
        self.score_names = [f"{d}{level}_R{k}" for level in levels for d in ("a2v", "v2a") for k in self.ks]
        self._parts: list[dict[str, list[torch.Tensor]]] = []
        self.reset()

    def reset(self) -> None:
        self._parts = [{"a": [], "v": [], "group": []} for _ in range(self.n_experiences)]

    @torch.no_grad()
    def update(self, model: nn.Module, strategy: Any, batch: Any, experience: int) -> None:
        a, v = model.embed_clip(batch["video"], batch["audio"])  # type: ignore[operator]
        part = self._parts[experience]
        part["a"].append(a.float().cpu())
        part["v"].append(v.float().cpu())
        part["group"].append(batch["group"].cpu())

    def _embeddings(self) -> list[dict[str, torch.Tensor]]:
        """Each test experience's embeddings and groups, gathered from every rank."""
        local = [{k: torch.cat(v) if v else torch.empty(0) for k, v in part.items()} for part in self._parts]
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return local
        shares: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(shares, local)
        return [{k: torch.cat([s[j][k] for s in shares if len(s[j][k])]) for k in local[j]} for j in range(len(local))]

    def compute(self) -> dict[str, list[float]]:
        per_experience = self._embeddings()
        gallery = {k: torch.cat([e[k] for e in per_experience]) for k in ("a", "v", "group")}
        gallery["pair"] = torch.arange(len(gallery["group"]))
        rows: dict[str, list[float]] = {name: [] for name in self.score_names}
        offset = 0
        for e in per_experience:
            identities = {"": (e["group"], gallery["group"])}
            identities["_inst"] = (torch.arange(offset, offset + len(e["group"])), gallery["pair"])
            offset += len(e["group"])
            for direction, (query, items) in {"a2v": ("a", "v"), "v2a": ("v", "a")}.items():
                for level, (query_ids, gallery_ids) in identities.items():
                    scores = retrieval_scores(e[query], gallery[items], query_ids, gallery_ids, ks=self.ks)
                    for k in self.ks:
                        rows[f"{direction}{level}_R{k}"].append(scores[f"top{k}"])
        return rows

    def totals(self) -> list[int]:
        return [len(e["group"]) for e in self._embeddings()]
