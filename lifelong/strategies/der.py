"""DER and DER++: experience replay with the logits stored alongside the memory samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lifelong.models.classifier import ContinualClassifier
from lifelong.strategies.base import Batch, StepOutput, register_strategy
from lifelong.strategies.common import non_negative_number, stored_target_mse
from lifelong.strategies.er import ExperienceReplay


@register_strategy("der")
class DER(ExperienceReplay):
    """Dark Experience Replay (DER): replay the network's past logits, not only its past labels.

    Buzzega, Boschini, Porrello, Abati, Calderara, "Dark Experience for General Continual Learning: a Strong,
    Simple Baseline", NeurIPS 2020 (arXiv 2004.07211); official code github.com/aimagelab/mammoth
    (``models/der.py``). Each incoming sample is offered to a reservoir memory (as :mod:`~lifelong.strategies.er`)
    together with the logits the network gave it in the forward pass of the step that inserted it (before that
    step's optimizer update, all classes, stored in fp32). Every step draws a replay batch and minimises::

        L = CE(f(x), y) + alpha * MSE(f(x'), z')        (x, y) incoming, (x', z') replayed samples and logits

    The stored logits have the head's full width (``model.num_classes``). A head that grows later
    (``expand``) widens the memory's logits with NaN columns, which the MSE leaves out (those classes did
    not exist when the sample was stored); with a multi-head model the MSE covers each replayed sample's
    task classes only (the other columns hold the mask value on both sides).

    Deviations from mammoth: one forward pass over the incoming and replayed samples together (mammoth: one
    for the incoming batch, one per replay batch; the same unless the backbone has batch normalisation, where
    the statistics then cover the joint batch, as for ``er`` and ``er_ace`` here); no augmentation (mammoth
    augments the incoming and replayed inputs of its image benchmarks; the incoming samples are stored
    unaugmented in both, and, like ``er``, the strategy adds none, so the stored logits are those of the
    stored input, where mammoth's are those of its augmented view); the logits' MSE is computed in fp32 and
    averaged over the entries that are targets (the same as ``F.mse_loss`` for a single head that does not
    grow); the memory is sharded under DDP.

    Default ``alpha``: 0.3, mammoth's ``utils/best_args.py`` (commit 0d727a7) for ``der`` on seq-cifar10 with a
    500-sample buffer (the paper's best hyperparameters, its Appendix; 0.3 for every buffer size on
    seq-cifar10, 0.1 on seq-tinyimg).

    Args:
        memory_size: total memory slots (split across DDP ranks by the driver).
        replay_batch_size: replayed samples per step (mammoth's ``minibatch_size``); ``None`` uses the
            incoming batch's size.
        alpha: weight of the logit MSE.
        seed: seed of the memory's random generator.

    """

    def __init__(
        self, memory_size: int = 500, replay_batch_size: int | None = None, alpha: float = 0.3, seed: int = 0
    ) -> None:
        super().__init__(memory_size, replay_batch_size, seed)
        self.alpha = non_negative_number(alpha, "alpha")

    def replay_draws(self, n_in: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """The replay batches of one step, each drawn independently (empty while the memory is empty)."""
        replayed = self.memory.sample(self.replay_batch_size or n_in, device=device)
        return [replayed] if replayed else []

    def training_loss(self, model: ContinualClassifier, batch: Batch) -> StepOutput:
        """``CE(incoming) + alpha * MSE(replayed logits, stored logits)`` (+ DER++'s term, see ``replay_terms``)."""
        x, y, t = batch
        n_in = len(y)
        draws = self.replay_draws(n_in, x.device)
        logits = model(torch.cat([x, *(d["x"] for d in draws)]), torch.cat([t, *(d["t"] for d in draws)]))
        ce = F.cross_entropy(logits[:n_in], y)
        loss, parts = ce, {"ce": ce.detach()}
        start = n_in
        chunks = []
        for replayed in draws:
            chunks.append(logits[start : start + len(replayed["y"])])
            start += len(replayed["y"])
        for name, (weight, term) in self.replay_terms(model, draws, chunks).items():
            loss = loss + weight * term
            parts[name] = term.detach()
        extras = {"logits": logits[:n_in].detach().float()}
        return StepOutput(loss=loss, parts=parts, logits=logits[:n_in], extras=extras)

    def replay_terms(
        self, model: ContinualClassifier, draws: list[dict[str, torch.Tensor]], logits: list[torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """The replay losses by name, with their weights: DER's logit MSE on the first replay batch."""
        if not draws:
            return {}
        return {"der": (self.alpha, self.logit_mse(model, logits[0], draws[0]))}

    @staticmethod
    def logit_mse(model: ContinualClassifier, current: torch.Tensor, replayed: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE between the replayed samples' current and stored logits (their task's classes on a multi-head)."""
        stored = replayed["logits"]
        valid = None
        if model.multi_head:
            valid = model.task_classes[replayed["t"].long()][:, : stored.shape[1]]
        return stored_target_mse(current, stored, valid)

    @torch.no_grad()
    def after_training_step(self, model: ContinualClassifier, batch: Batch, output: StepOutput) -> None:
        """Offer the incoming (unaugmented) samples to the reservoir with their logits of this step's forward pass."""
        x, y, t = batch
        logits = output.extras.get("logits")
        if logits is None or len(logits) != len(y):
            raise RuntimeError(f"{type(self).__name__}.after_training_step needs the StepOutput of the same batch")
        self.widen_memory(logits.shape[1])
        self.memory.add(x=x, y=y, t=t, logits=logits.float())

    def widen_memory(self, width: int) -> None:
        """Give the memory's logits ``width`` columns if the head grew; the new columns of old samples are NaN."""
        stored = getattr(self.memory, "logits", None)
        if stored is None or stored.shape[1] >= width:
            return
        grown = torch.full((stored.shape[0], width), float("nan"), dtype=stored.dtype, device=stored.device)
        grown[:, : stored.shape[1]] = stored
        self.memory.logits = grown


@register_strategy("derpp")
class DERpp(DER):
    """DER++: DER plus a cross-entropy on the labels of a second, independently drawn replay batch.

    Buzzega et al., NeurIPS 2020 (see :class:`DER`); official code ``models/derpp.py`` of aimagelab/mammoth::

        L = CE(f(x), y) + alpha * MSE(f(x'), z') + beta * CE(f(x''), y'')

    where ``(x', z')`` and ``(x'', y'')`` are two replay batches drawn independently from the memory (each
    without replacement; they may share samples). Deviations from mammoth: those of :class:`DER` (one
    forward pass over the incoming and both replay batches; no augmentation).

    Defaults ``alpha`` 0.2 and ``beta`` 0.5: mammoth's ``utils/best_args.py`` (commit 0d727a7) for ``derpp`` on
    seq-cifar10 with a 500-sample buffer (the paper's Appendix; with 200 samples: 0.1 and 0.5).

    Args:
        memory_size: total memory slots (split across DDP ranks by the driver).
        replay_batch_size: samples of each of the two replay batches; ``None`` uses the incoming batch's size.
        alpha: weight of the logit MSE on the first replay batch.
        beta: weight of the cross-entropy on the second replay batch.
        seed: seed of the memory's random generator.

    """

    def __init__(
        self,
        memory_size: int = 500,
        replay_batch_size: int | None = None,
        alpha: float = 0.2,
        beta: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__(memory_size, replay_batch_size, alpha, seed)
        self.beta = non_negative_number(beta, "beta")

    def replay_draws(self, n_in: int, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """Two replay batches, drawn one after the other from the memory's generator."""
        first = super().replay_draws(n_in, device)
        return first + super().replay_draws(n_in, device) if first else []

    def replay_terms(
        self, model: ContinualClassifier, draws: list[dict[str, torch.Tensor]], logits: list[torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """DER's logit MSE on the first replay batch and the cross-entropy on the second one's labels."""
        terms = super().replay_terms(model, draws, logits)
        if len(draws) == 2:
            terms["replay_ce"] = (self.beta, F.cross_entropy(logits[1], draws[1]["y"]))
        return terms
