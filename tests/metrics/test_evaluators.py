"""Score matrices, the retrieval evaluator against hand-made embeddings, FLAVA's forgetting by hand."""

import pytest
import torch

from lifelong.metrics.evaluators import AccuracyEvaluator, RetrievalEvaluator
from lifelong.metrics.functional import average_accuracy, flava_forgetting
from lifelong.metrics.score_matrices import ScoreMatrices


class Embedder(torch.nn.Module):
    """``embed_clip`` returns the batch's own audio/video vectors: the test chooses the similarities."""

    def embed_clip(self, video, audio):
        return audio, video


def test_retrieval_rows_by_hand():
    # two test experiences of two pairs each; groups 0,1 | 2,3. Audio i is closest to video i except audio 1,
    # whose nearest video is pair 2 (a wrong group) and whose own video comes second.
    audio = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.6, 0.8, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    video = torch.eye(4)
    groups = torch.arange(4)
    evaluator = RetrievalEvaluator(2, ks=(1, 2))
    evaluator.reset()
    for j in range(2):
        rows = slice(2 * j, 2 * j + 2)
        batch = {"audio": audio[rows], "video": video[rows], "group": groups[rows]}
        evaluator.update(Embedder(), None, batch, j)
    rows = evaluator.compute()
    assert rows["a2v_R1"] == [0.5, 1.0]  # audio 1 ranks video 2 first
    assert rows["a2v_R2"] == [1.0, 1.0]
    # video 1 -> audio 1 (0.6) vs audio 0 (0.0): correct; video 2 -> audio 2 (1.0) beats audio 1 (0.8)
    assert rows["v2a_R1"] == [1.0, 1.0]
    assert evaluator.totals() == [2, 2]
    # every pair its own group: instance level = group level
    assert all(rows[name.replace("_R", "_inst_R")] == rows[name] for name in ("a2v_R1", "a2v_R2", "v2a_R1"))


def test_instance_level_counts_only_the_own_pair():
    # one experience, two digits (groups 0, 0, 1, 1); audio 0 is closest to video 1 (same digit, another pair),
    # audio 1 to its own video, audio 2 to video 3 (same digit), audio 3 to video 0 (another digit)
    audio = torch.tensor([[0.1, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.2, 1.0], [1.0, 0.0, 0.0, 0.5]])
    video, groups = torch.eye(4), torch.tensor([0, 0, 1, 1])
    evaluator = RetrievalEvaluator(1, ks=(1, 2))
    evaluator.reset()
    evaluator.update(Embedder(), None, {"audio": audio, "video": video, "group": groups}, 0)
    rows = evaluator.compute()
    assert rows["a2v_R1"] == [0.75]  # audio 0, 1 and 2 find their digit first, audio 3 does not
    assert rows["a2v_inst_R1"] == [0.25]  # only audio 1 ranks its own video first
    assert rows["a2v_inst_R2"] == [1.0]  # every own video is in the top 2
    assert evaluator.score_names[:2] == ["a2v_R1", "a2v_R2"]  # the class-level a2v R@1 stays the primary score


def test_accuracy_evaluator_counts_per_experience():
    class Strategy:
        def eval_logits(self, model, x, t):
            return x

    evaluator = AccuracyEvaluator(2)
    evaluator.reset()
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    evaluator.update(None, Strategy(), (logits, torch.tensor([0, 0, 0]), torch.zeros(3)), 0)
    evaluator.update(None, Strategy(), (logits[:1], torch.tensor([1]), torch.zeros(1)), 1)
    assert evaluator.compute() == {"acc": pytest.approx([2 / 3, 0.0])}
    assert evaluator.totals() == [3, 1]


def test_every_score_gets_the_same_matrix_math():
    m = ScoreMatrices(["a2v_R1", "v2a_R1"], 2)
    m.set_initial({"a2v_R1": [0.1, 0.1], "v2a_R1": [0.2, 0.2]})
    m.set_row(0, {"a2v_R1": [0.9, 0.2], "v2a_R1": [0.5, 0.3]})
    m.set_row(1, {"a2v_R1": [0.6, 0.8], "v2a_R1": [0.5, 0.7]})
    metrics = m.metrics_so_far()
    assert metrics["a2v_R1/avg"] == pytest.approx(0.7)
    assert metrics["a2v_R1/bwt"] == pytest.approx(-0.3)
    assert metrics["a2v_R1/fwt"] == pytest.approx(0.1)
    assert metrics["v2a_R1/forgetting"] == pytest.approx(0.0)
    assert metrics["v2a_R1/avg"] == pytest.approx(average_accuracy([[0.5, 0.3], [0.5, 0.7]]))
    again = ScoreMatrices.from_state_dict(m.state_dict())
    assert again.allclose(m)
    assert again.names == ["a2v_R1", "v2a_R1"]


def test_accuracy_keeps_its_plain_metric_names():
    m = ScoreMatrices(["acc"], 1)
    m.set_row(0, {"acc": [0.5]})
    assert set(m.metrics_so_far()) == {"avg_acc", "avg_inc_acc", "forgetting", "bwt"}


def test_flava_forgetting_by_hand():
    r = [[0.6, 0.2, 0.1], [0.4, 0.5, 0.3], [0.3, 0.4, 0.5]]
    # task0: max(0.6,0.4)-0.3=0.3; task1: max(0.2,0.5)-0.4=0.1; task2: max(0.1,0.3)-0.5=-0.2 -> 0.2/2
    assert flava_forgetting(r) == pytest.approx(0.1)
