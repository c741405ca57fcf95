"""Compatibility of the models a run produces: the lower-triangular matrix M[i][j] and AC, AM, BC, FC.

After experience ``i`` the current model embeds the evaluation gallery **once**; those features are
kept (as buffers, so they land in checkpoints) and never recomputed: the point of a compatible
model is that old galleries need no re-indexing. Row ``i`` of ``M`` then scores the current model's
query features against every kept gallery ``j <= i`` with one protocol (``lifelong.metrics.retrieval``);
the metrics come from ``lifelong.metrics.compatibility``.

Retrieval features (``lifelong.models.dsimplex.retrieval_features``): the d-dim projection output for a
model with a d-Simplex head, else the backbone features; always L2-normalised.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lifelong.analysis.base import Analysis, evaluation_mode, register_analysis
from lifelong.data.datasets import DATASETS, TensorSplit, resolve_root
from lifelong.data.reshape import fit_images
from lifelong.data.streams import subsample_per_class
from lifelong.data.types import Experience, Stream
from lifelong.metrics.compatibility import TIE_RULES, compatibility_metrics, compatibility_pairs
from lifelong.metrics.retrieval import make_pairs, retrieval_scores, template_identification, verification_accuracy
from lifelong.models.classifier import ContinualClassifier
from lifelong.models.dsimplex import retrieval_features
from lifelong.strategies.base import Strategy

KEY = "analysis.compatibility"
PROTOCOLS: dict[str, str] = {"retrieval": "top1", "identification": "top1", "verification": "accuracy"}
UNSEEN = "unseen"  # ``classes``: the classes of ``dataset`` that no experience of the stream contains
SPLITS = ("train", "test")
GALLERY_CLASSES = ("all", "seen")


@torch.no_grad()
def embed(model: ContinualClassifier, x: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Normalised ``retrieval_features`` of ``x``: ``(N, d)`` float32 on the CPU (model in eval mode on ``device``)."""
    chunks = []
    with evaluation_mode(model, device):
        parameter = next(model.parameters(), None)
        dtype = parameter.dtype if parameter is not None else torch.float32
        for start in range(0, len(x), batch_size):
            features = retrieval_features(model, x[start : start + batch_size].to(device, dtype))
            chunks.append(F.normalize(features.float(), dim=1).cpu())
    return torch.cat(chunks)


def _concat(experiences: list[Experience]) -> TensorSplit:
    return TensorSplit(torch.cat([e.dataset.x for e in experiences]), torch.cat([e.dataset.y for e in experiences]))


def _check_evaluation_data(classes: object, dataset: str | None, match_shape: bool) -> None:
    """``classes`` is null, ``"unseen"`` (with a ``dataset``) or class ids; ``match_shape`` needs a ``dataset``."""
    if classes == UNSEEN and dataset is None:
        raise ValueError(
            f"{KEY}.classes='unseen' reads the held-out classes from a dataset: set {KEY}.dataset to the "
            "stream's dataset (e.g. fashion_mnist) and leave them out of training with stream.exclude_classes"
        )
    if classes != UNSEEN and classes is not None and (not isinstance(classes, list | tuple) or not classes):
        raise ValueError(
            f"{KEY}.classes={classes!r} is not allowed; use null, 'unseen' or a non-empty list of class ids"
        )
    if match_shape and dataset is None:
        raise ValueError(f"{KEY}.match_shape fits another dataset's images to the stream's; set dataset too")


def unseen_classes(split: TensorSplit, stream: Stream) -> list[int]:
    """The classes of ``split`` that no experience of ``stream`` contains (``ValueError`` if there are none)."""
    trained = {int(c) for classes in stream.info.classes_per_experience for c in classes}
    unseen = [c for c in split.classes() if c not in trained]
    if not unseen:
        raise ValueError(
            f"{KEY}.classes='unseen': the stream trains every class of {KEY}.dataset; hold some out with "
            "stream.exclude_classes (or stream.classes)"
        )
    return unseen


@register_analysis("compatibility")
class Compatibility(Analysis):
    """Compatibility matrix ``M[i][j]`` (queries embedded by model ``i``, gallery by model ``j <= i``).

    Protocols (``protocol``):

    - ``retrieval`` (default): closed-set retrieval (leave-one-out CMC), cosine ranking of the whole
      gallery; ``metric`` is ``top<k>`` (CMC) or ``map``. With the query set equal to the gallery set
      (the default: the test set as both) each query's own sample is left out of its ranking.
    - ``identification``: top-1 1:N search against per-class gallery templates (mean of normalised
      features, re-normalised), as in the CVPR'24 HOC code (there: CIFAR-10 train queries,
      CIFAR-10 test templates).
    - ``verification``: ``n_pairs`` same-class and ``n_pairs`` different-class random pairs of the
      gallery set; the first image goes through the query model, the second through the gallery
      model; accuracy of the best squared-L2 threshold under ``n_folds``-fold cross-validation (CL2R).

    Data: by default the stream's own data (``gallery_split``/``query_split``: ``test`` or ``train``, all
    experiences concatenated): closed-set. Open-set evaluation: ``dataset`` names another dataset of
    ``DATASETS`` with the same input shape (e.g. ``cifar10`` after training on ``cifar100``), read from
    ``root`` (default data root); ``match_shape: true`` resizes (bilinear) and fits the channels of
    another dataset's images to the stream's (e.g. scikit-learn ``digits``, 8x8, as the open set of
    Fashion-MNIST, 28x28). ``classes`` restricts the evaluation to some classes; ``classes: unseen``
    keeps exactly the classes of ``dataset`` that no experience contains (the stream's own dataset with
    ``stream.exclude_classes``: held-out classes, open set). ``*_per_class`` subsample (seeded).
    ``gallery_classes="seen"`` restricts the pair (model ``i``, gallery ``j``) to the classes of experiences
    ``0..j`` on both sides (the gallery holds what model ``j`` was trained on); ``"all"`` (default) scores
    every model on the whole evaluation set, future classes included (the BCT/OCA closed-set protocol).

    Logged per experience ``i`` (as ``compatibility/<name>``): ``self_test`` (``M[i][i]``), ``am``, and from
    ``i >= 1`` on ``ac``, ``bc``, ``fc``, ``cross_prev`` (``M[i][i-1]``) and ``ecc/g<j>`` (1 if
    ``M[i][j] > M[j][j]``, or ``>=`` with ``ties: pass``, for every ``j < i``). Artifacts:
    ``compatibility_matrix.csv`` and ``.png``.

    Args:
        protocol: ``retrieval``, ``identification`` or ``verification``.
        metric: what fills ``M``: ``top<k>``/``map`` for retrieval, ``top1`` for identification,
            ``accuracy`` for verification; ``None`` picks the protocol's first.
        dataset: another dataset for open-set evaluation; ``None`` uses the stream's data.
        root: data root of ``dataset`` (``None``: ``LIFELONG_DATA`` or ``./data``).
        match_shape: bring ``dataset``'s images to the stream's input shape (resize, channels).
        gallery_split: split the gallery comes from.
        query_split: split the queries come from (verification uses pairs within the gallery set).
        classes: keep only these classes (``None``: all; ``"unseen"``: those no experience contains).
        gallery_classes: ``all`` or ``seen`` (see above).
        gallery_per_class: gallery samples per class (``None``: all).
        query_per_class: query samples per class (``None``: all); ignored when the query set is the gallery set.
        n_pairs: verification pairs of each kind.
        n_folds: verification folds.
        batch_size: samples per forward pass.
        seed: seed of the subsampling and of the pairs.
        ties: AC's tie rule: ``fail`` (a tie ``M[i][j] = M[j][j]`` fails, iamcl2r; the default) or ``pass``
            (only ``<`` fails, the CL2R and CoReS code); also the rule of ``ecc/g<j>``.

    """

    matrix: torch.Tensor
    galleries: torch.Tensor
    artifact_stem = (
        "compatibility_matrix"  # file names of the artifacts (subclasses registered under another name change it)
    )

    def __init__(
        self,
        protocol: str = "retrieval",
        metric: str | None = None,
        dataset: str | None = None,
        root: str | None = None,
        gallery_split: str = "test",
        query_split: str = "test",
        classes: list[int] | str | None = None,
        gallery_classes: str = "all",
        gallery_per_class: int | None = None,
        query_per_class: int | None = None,
        n_pairs: int = 3000,
        n_folds: int = 10,
        batch_size: int = 1000,
        seed: int = 0,
        match_shape: bool = False,
        ties: str = "fail",
    ) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"{KEY}.protocol={protocol!r} is not allowed; choose one of: {', '.join(PROTOCOLS)}")
        self.protocol = protocol
        self.metric = metric or PROTOCOLS[protocol]
        self.top_k = self._check_metric(self.metric)
        for key, split in (("gallery_split", gallery_split), ("query_split", query_split)):
            if split not in SPLITS:
                raise ValueError(f"{KEY}.{key}={split!r} is not allowed; choose one of: {', '.join(SPLITS)}")
        if protocol == "verification" and query_split != gallery_split:
            raise ValueError(f"{KEY}.query_split: verification pairs come from the gallery set; leave it equal")
        for key, count in (("gallery_per_class", gallery_per_class), ("query_per_class", query_per_class)):
            if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
                raise ValueError(f"{KEY}.{key}={count!r} is not allowed; use null (all samples) or an integer >= 1")
        for key, value in (("n_pairs", n_pairs), ("n_folds", n_folds), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "n_folds" else 1):
                raise ValueError(
                    f"{KEY}.{key}={value!r} is not allowed; use an integer >= {2 if key == 'n_folds' else 1}"
                )
        if gallery_classes not in GALLERY_CLASSES:
            raise ValueError(
                f"{KEY}.gallery_classes={gallery_classes!r} is not allowed; choose one of: {', '.join(GALLERY_CLASSES)}"
            )
        if gallery_classes == "seen" and dataset is not None:
            raise ValueError(f"{KEY}.gallery_classes='seen' needs the stream's own data; leave dataset null")
        _check_evaluation_data(classes, dataset, match_shape)
        if ties not in TIE_RULES:
            raise ValueError(f"{KEY}.ties={ties!r} is not allowed; choose one of: {', '.join(TIE_RULES)}")
        self.ties = ties
        self.dataset, self.root, self.match_shape = dataset, root, bool(match_shape)
        self.unseen = classes == UNSEEN
        self.gallery_split, self.query_split = gallery_split, query_split
        self.classes = None if classes is None or self.unseen else [int(c) for c in classes]
        self.gallery_classes = gallery_classes
        self.seen: list[torch.Tensor] = []  # per model j: the classes its gallery holds ("seen" mode)
        self.gallery_per_class, self.query_per_class = gallery_per_class, query_per_class
        self.n_pairs, self.n_folds, self.batch_size, self.seed = n_pairs, n_folds, batch_size, seed
        self.same_set = query_split == gallery_split
        self.gallery: TensorSplit | None = None
        self.query: TensorSplit | None = None
        self.pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.extractions = 0  # gallery extractions done by this object (not state; for tests and logs)
        self.register_buffer("matrix", torch.zeros(0, 0, dtype=torch.float64))
        self.register_buffer("galleries", torch.zeros(0, 0, 0))  # (models, gallery size, d)

    def _check_metric(self, metric: str) -> int | None:
        allowed = {"retrieval": "top<k> (e.g. top1, top5) or map", "identification": "top1", "verification": "accuracy"}
        if self.protocol == "retrieval":
            if metric == "map":
                return None
            if metric.startswith("top") and metric[3:].isdigit() and int(metric[3:]) >= 1:
                return int(metric[3:])
        elif metric == PROTOCOLS[self.protocol]:
            return None
        raise ValueError(
            f"{KEY}.metric={metric!r} is not allowed with protocol {self.protocol!r}; use {allowed[self.protocol]}"
        )

    # ------------------------------------------------------------------ data

    def setup(self, stream: Stream, device: torch.device) -> None:
        """Load the evaluation sets and size the matrix for the stream's experiences."""
        super().setup(stream, device)
        splits = self._splits(stream)
        if self.unseen:
            self.classes = unseen_classes(splits["test"], stream)
        self.gallery = self._prepare(splits[self.gallery_split], self.gallery_per_class, salt=11)
        self.query = (
            self.gallery if self.same_set else self._prepare(splits[self.query_split], self.query_per_class, 12)
        )
        if self.protocol == "verification":
            generator = torch.Generator().manual_seed(self.seed)
            self.pairs = make_pairs(self.gallery.y, self.n_pairs, self.n_pairs, generator)
        classes = stream.info.classes_per_experience or [[]] * len(stream)
        self.seen = [torch.as_tensor(sorted({int(c) for e in classes[: j + 1] for c in e})) for j in range(len(stream))]
        if self.matrix.shape[0] != len(stream):
            self.matrix = torch.full((len(stream), len(stream)), float("nan"), dtype=torch.float64)

    def _splits(self, stream: Stream) -> dict[str, TensorSplit]:
        if self.dataset is None:
            return {"train": _concat(stream.train), "test": _concat(stream.test)}
        try:
            reader = DATASETS.get(self.dataset)
        except ValueError as err:
            raise ValueError(f"{KEY}.dataset: {err}") from None
        train, test = reader(resolve_root(self.root), False)
        shape, wanted = tuple(test.x.shape[1:]), tuple(stream.info.input_shape)
        if self.match_shape and shape != wanted:
            train = TensorSplit(fit_images(train.x, wanted), train.y)
            test = TensorSplit(fit_images(test.x, wanted), test.y)
        elif shape != wanted:
            raise ValueError(
                f"{KEY}.dataset={self.dataset!r} has inputs of shape {shape}, the stream's model takes "
                f"{wanted}; set {KEY}.match_shape=true to resize them"
            )
        return {"train": train, "test": test}

    def _prepare(self, split: TensorSplit, per_class: int | None, salt: int) -> TensorSplit:
        if self.classes is not None:
            keep = torch.isin(split.y, torch.as_tensor(self.classes))
            if not keep.any():
                raise ValueError(f"{KEY}.classes={self.classes} selects no sample (classes present: {split.classes()})")
            split = split.subset(keep.nonzero(as_tuple=True)[0])
        return subsample_per_class(split, per_class, self.seed, salt=salt)

    # ------------------------------------------------------------------ evaluation

    def score(self, query: torch.Tensor, gallery: torch.Tensor, j: int | None = None) -> float:
        """``M``'s entry for query features ``query`` (current model) and gallery features ``gallery`` (model ``j``).

        With ``gallery_classes="seen"`` both sides keep only the classes of experiences ``0..j``.
        """
        assert self.gallery is not None
        assert self.query is not None
        q, g = query.to(self.device), gallery.to(self.device)
        q_labels, g_labels = self.query.y, self.gallery.y
        q_keep = g_keep = None
        if self.gallery_classes == "seen" and j is not None:
            q_keep, g_keep = torch.isin(q_labels, self.seen[j]), torch.isin(g_labels, self.seen[j])
        if self.protocol == "verification":
            assert self.pairs is not None
            first, second, same = self.pairs
            if g_keep is not None:
                both = g_keep[first] & g_keep[second]
                first, second, same = first[both], second[both], same[both]
            return verification_accuracy(q[first.to(q.device)], g[second.to(g.device)], same, self.n_folds)
        if q_keep is not None and g_keep is not None:
            q, q_labels = q[q_keep.to(q.device)], q_labels[q_keep]
            g, g_labels = g[g_keep.to(g.device)], g_labels[g_keep]
        if self.protocol == "retrieval":
            ks = (self.top_k,) if self.top_k is not None else (1,)
            scores = retrieval_scores(q, g, q_labels, g_labels, ks=ks, leave_one_out=self.same_set)
            return scores[self.metric]
        return template_identification(q, g, q_labels, g_labels)

    def evaluate(self, after: int, model: ContinualClassifier, strategy: Strategy, stream: Stream) -> dict[str, float]:
        """Keep model ``after``'s gallery features, fill row ``after`` of ``M`` and return the metrics so far."""
        if after < 0:
            return {}
        if self.gallery is None or self.query is None:
            raise RuntimeError("Compatibility.evaluate called before setup")
        stored = self.galleries.shape[0]
        if stored < after:
            raise RuntimeError(f"compatibility: gallery features of models {stored}..{after - 1} were never kept")
        if stored == after:  # a new model: its gallery is embedded once, now, and kept
            features = embed(model, self.gallery.x, self.device, self.batch_size)
            self.extractions += 1
            self.galleries = features[None] if stored == 0 else torch.cat([self.galleries, features[None]])
        current = self.galleries[after]
        query = current if self.same_set else embed(model, self.query.x, self.device, self.batch_size)
        for j in range(after + 1):
            self.matrix[after, j] = self.score(query, self.galleries[j], j)
        return self.metrics(after)

    def metrics(self, after: int) -> dict[str, float]:
        """The metrics of the top-left ``(after + 1)`` block of ``M``."""
        block = self.matrix[: after + 1, : after + 1].numpy()
        out = compatibility_metrics(block, self.ties)
        if after >= 1:
            out["cross_prev"] = float(block[after, after - 1])
            ecc = compatibility_pairs(block, self.ties)
            out.update({f"ecc/g{j}": float(ecc[after, j]) for j in range(after)})
        return out

    # ------------------------------------------------------------------ artifacts and state

    def write_artifacts(self, directory: Path) -> list[Path]:
        """``compatibility_matrix.csv`` (empty cells: not evaluated) and its heatmap ``compatibility_matrix.png``."""
        from lifelong.plots import matrix_heatmap

        filled = int((~torch.isnan(self.matrix)).any(dim=1).sum()) if self.matrix.numel() else 0
        if filled == 0:
            return []
        directory = Path(directory)
        rows = self.matrix.tolist()
        csv_path = directory / f"{self.artifact_stem}.csv"
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["query_model\\gallery_model", *[f"model {j}" for j in range(len(rows))]])
            for i, row in enumerate(rows):
                writer.writerow([f"model {i}", *["" if v != v else f"{v:.6f}" for v in row]])
        png_path = matrix_heatmap(
            rows,
            directory / f"{self.artifact_stem}.png",
            title=f"Compatibility ({self.protocol}, {self.metric})",
            row_labels=[f"query {i}" for i in range(len(rows))],
            col_labels=[f"gallery {j}" for j in range(len(rows))],
        )
        return [csv_path, png_path]

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in ("matrix", "galleries"):
            stored = state_dict.get(prefix + name)
            if stored is not None and stored.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(stored))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
