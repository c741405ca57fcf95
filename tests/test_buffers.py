import torch

from lifelong.buffers import ReservoirBuffer


def offer(buffer, start, n):
    ids = torch.arange(start, start + n)
    buffer.add(x=ids.float().unsqueeze(1), y=ids)
    return start + n


def test_fills_in_order_until_full_then_keeps_capacity():
    buffer = ReservoirBuffer(5)
    offer(buffer, 0, 3)
    assert len(buffer) == 3
    assert buffer.get("y").tolist() == [0, 1, 2]
    offer(buffer, 3, 10)
    assert len(buffer) == 5
    assert buffer.num_seen == 13
    # every stored sample is one that was offered, and stored x stays aligned with stored y
    assert set(buffer.get("y").tolist()) <= set(range(13))
    assert torch.equal(buffer.get("x").squeeze(1).long(), buffer.get("y"))


def test_reservoir_is_uniform_over_the_stream():
    # After n offers every sample is kept with probability capacity / n.
    capacity, n, trials = 10, 50, 2000
    counts = torch.zeros(n)
    for seed in range(trials):
        buffer = ReservoirBuffer(capacity, seed=seed)
        start = 0
        while start < n:
            start = offer(buffer, start, 7 if start + 7 <= n else n - start)
        counts[buffer.get("y")] += 1
    freq = counts / trials
    assert torch.allclose(freq, torch.full((n,), capacity / n), atol=0.05)
    # early and late halves of the stream are equally represented
    assert abs(freq[:25].mean() - freq[25:].mean()) < 0.02


def test_sample_without_replacement_and_empty():
    buffer = ReservoirBuffer(8)
    assert buffer.sample(4) == {}
    offer(buffer, 0, 6)
    drawn = buffer.sample(10)
    assert sorted(drawn["y"].tolist()) == list(range(6))
    assert len(set(buffer.sample(4)["y"].tolist())) == 4


def test_state_dict_round_trip_restores_storage_and_rng():
    buffer = ReservoirBuffer(4, seed=3)
    offer(buffer, 0, 9)
    state = buffer.state_dict()
    clone = ReservoirBuffer(4, seed=99)
    clone.load_state_dict(state)
    assert torch.equal(clone.get("y"), buffer.get("y"))
    assert clone.num_seen == 9
    # same generator state -> same future decisions and samples
    assert torch.equal(clone.sample(3)["y"], buffer.sample(3)["y"])
    offer(clone, 9, 5)
    offer(buffer, 9, 5)
    assert torch.equal(clone.get("y"), buffer.get("y"))
