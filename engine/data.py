"""The data sets of the slides: the ball (vanishing), make_regression (exploding).

Each generator returns float32 tensors X (n, features) and y (n, 1).
"""

from __future__ import annotations

import numpy as np
import torch

from engine.config import RunConfig


def ball_dataset(n_points: int = 1000, n_dims: int = 10, seed: int = 13):
    """Points inside a ball, labelled by whether |sum(x)| exceeds half the radius.

    The source's generator exactly (numpy only, reseeded before the shuffle).
    A private RandomState(seed) draws what `np.random.seed(seed)` then the
    global functions would, without touching the global state that a second
    session (the compare view) may be seeding in another thread.
    """
    rng = np.random.RandomState(seed)
    radius = np.sqrt(n_dims)
    points = rng.normal(size=(n_points, n_dims))
    sphere = radius * points / np.linalg.norm(points, axis=1).reshape(-1, 1)
    X = sphere * rng.uniform(size=(n_points, 1)) ** (1 / n_dims)
    adjustment = 1 / np.std(X)
    radius *= adjustment
    X *= adjustment
    y = (np.abs(np.sum(X, axis=1)) > (radius * 0.5)).astype(int)
    shuffled = np.random.RandomState(seed).permutation(n_points)
    return X[shuffled], y[shuffled]


def lazy_imports(config: RunConfig) -> tuple[str, ...]:
    """The modules that making `config`'s data imports on first use (engine.trainer freezes them)."""
    return ("sklearn.datasets",) if config.dataset == "regression" else ()


def regression_dataset(n_samples: int = 1000, n_features: int = 10):
    """sklearn's make_regression as the slides call it (noise 0.1, seed 42)."""
    from sklearn.datasets import make_regression

    return make_regression(n_samples=n_samples, n_features=n_features, noise=0.1, random_state=42)


def sequence_dataset(n_samples: int, n_features: int, seq_len: int, seed: int = 7):
    """Noisy sequences whose target is the sum of the first step's features.

    Every step is N(0, 1) noise and only the first one matters (with one
    feature: "recall the first number"), so the loss's gradient must travel
    back through every time step to reach it: where gradients explode or
    vanish in time. Draws from a private generator, never the global one.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_samples, seq_len, n_features))
    y = X[:, 0, :].sum(axis=1)
    return X, y


def standardize(y: np.ndarray) -> np.ndarray:
    """The target scaled to mean 0 and (population) standard deviation 1."""
    return (y - y.mean()) / y.std()


def make_tensors(config: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The configured data set as float32 tensors, y shaped (n, 1)."""
    if config.dataset == "ball":
        X, y = ball_dataset(config.n_samples, config.n_features)
    elif config.dataset == "regression":
        X, y = regression_dataset(config.n_samples, config.n_features)
    else:
        X, y = sequence_dataset(config.n_samples, config.n_features, config.seq_len)
    if config.standardize_target:
        y = standardize(np.asarray(y, dtype=np.float64))
    X_t = torch.as_tensor(X).float()
    y_t = torch.as_tensor(y).float().view(-1, 1)
    return X_t, y_t


class EpochBatches:
    """Mini-batches in DataLoader's order, from a generator private to the run.

    With shuffling it draws from `generator` exactly what DataLoader draws from
    the global RNG (a base seed, then the sampler's seed), so a run seeded like
    the source visits the samples in the same order, without touching global
    state that another run in another thread may be using.
    """

    def __init__(self, X, y, batch_size: int, shuffle: bool, generator: torch.Generator):
        self.X, self.y = X, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return -(-len(self.X) // self.batch_size)

    def epoch(self):
        """Yield (x, y) batches of one epoch."""
        n = len(self.X)
        if not self.shuffle:
            for start in range(0, n, self.batch_size):
                yield (
                    self.X[start : start + self.batch_size],
                    self.y[start : start + self.batch_size],
                )
            return
        # DataLoader's iterator draws a worker base seed first, then the sampler's.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=self.generator))
        order_rng = torch.Generator()
        order_rng.manual_seed(seed)
        order = torch.randperm(n, generator=order_rng)
        if self.X.device.type == "cuda":
            # From pinned memory the copy is asynchronous: a pageable one would
            # hold the host until the GPU caught up, a second sync in the step.
            order = order.pin_memory().to(self.X.device, non_blocking=True)
        else:
            order = order.to(self.X.device)
        # One gather an epoch, then views: the same batches as gathering each one,
        # without three tensor operations a step.
        X, y = self.X[order], self.y[order]
        for start in range(0, n, self.batch_size):
            yield X[start : start + self.batch_size], y[start : start + self.batch_size]
