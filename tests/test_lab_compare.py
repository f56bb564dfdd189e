"""Compare: two sessions at once give exactly the records each gives alone.

Model building is under a lock around the global RNG, shuffles come from
private generators and the data generators touch no global state, so
nothing one run does can change the other's numbers.
"""

import threading

import pytest

from engine.compare import SessionPair, config_diff, describe_diff, with_same_seeds
from engine.presets import get_preset
from engine.session import TrainingSession

WAIT = 120.0


def _small(name: str, steps: int):
    # Exact sampling: the time budget picks captured steps by how fast each ran.
    config = get_preset(name).config.replace(
        device="cpu", on_nonfinite="continue", sampling="exact"
    )
    if config.batch_size == config.n_samples:  # full batch: one step an epoch
        return config.replace(epochs=steps)
    if config.model == "rnn":
        return config.replace(n_samples=config.batch_size * steps, epochs=1, seq_len=30)
    return config.replace(n_samples=config.batch_size * steps, epochs=1)


def _alone(config) -> list[str]:
    records: list[str] = []
    session = TrainingSession(config, on_record=lambda r: records.append(repr(r)))
    session.start()
    assert session.wait_until(lambda s: s.state == "finished", WAIT), session.status()
    session.stop()
    return records


PAIRS = [
    ("clip-value", "clip-hook"),
    ("sigmoid-normal", "relu-kaiming"),
    ("relu-normal", "rnn-exploding"),
    ("exploding", "exploding"),  # the same config twice: same shuffles, same NaN step
]


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_two_sessions_at_once_match_each_alone(a, b):
    configs = (_small(a, 12), _small(b, 12))
    expected = [_alone(c) for c in configs]
    got: tuple[list[str], list[str]] = ([], [])
    lock = threading.Lock()

    def collect(side, record):
        with lock:
            got[side].append(repr(record))

    pair = SessionPair(*configs, on_record=collect)
    pair.start()
    try:
        assert pair.wait_until(lambda s: s.state == "finished", WAIT), pair.status()
    finally:
        pair.stop()
    # repr compares NaN with NaN as text, and every statistic and histogram bin.
    assert got[0] == expected[0] and len(got[0]) == 12
    assert got[1] == expected[1]
    assert [h.count for h in pair.histories] == [12, 12]


def test_pair_controls_step_both_sides():
    pair = SessionPair(_small("relu-kaiming", 50), _small("relu-normal-bn", 50))
    try:
        pair.step(wait=True)
        pair.step(wait=True)
        assert [s.step for s in pair.status()] == [2, 2]
        pair.reset()
        assert [s.state for s in pair.status()] == ["idle", "idle"]
        assert [h.count for h in pair.histories] == [0, 0]
    finally:
        assert pair.stop()


def test_config_diff_and_same_seeds():
    a, b = get_preset("clip-value").config, get_preset("clip-hook").config
    assert config_diff(a, b) == (("clip", "value", "hook"),)
    assert describe_diff(a, b) == "clip: value → hook"
    assert describe_diff(a, a) == "identical configs"
    c = with_same_seeds(a, get_preset("exploding").config)
    assert (c.seed, c.init_seed) == (a.seed, a.init_seed)
    assert ("init_seed", 42, None) not in config_diff(a, c)


def test_data_generators_leave_global_random_state_alone():
    import numpy as np
    import torch

    from engine.data import make_tensors

    np.random.seed(0)
    torch.manual_seed(0)
    expected = (np.random.rand(), torch.rand(1).item())
    np.random.seed(0)
    torch.manual_seed(0)
    for name in ("sigmoid-normal", "exploding", "rnn-exploding"):
        make_tensors(get_preset(name).config)
    assert (np.random.rand(), torch.rand(1).item()) == expected
