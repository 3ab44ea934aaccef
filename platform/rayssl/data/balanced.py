"""Which labelled images a fine-tuning step trains on: class-balanced draws (pure torch, no Ray).

A user's labels are imbalanced (40 cats, 3 foxes). Drawing rows uniformly, a batch of 32 holds a
fox once every few steps and the head learns the prior instead of the fox; drawing each row with
weight 1 / (its class's count) gives every class the same share of the batches, without
duplicating anything on disk (torch.utils.data.WeightedRandomSampler's rule, one batch at a time).
"""

from __future__ import annotations

import torch


class LabelledBatchSampler:
    """Rows of the labelled set for each step, drawn with replacement.

    labels: int64 [L] class of each labelled row. balanced: weight each row by 1 / its class's count.
    Balanced labels (every class equally often) draw uniformly, as the unbalanced sampler does, so a
    class-balanced benchmark draw gives exactly the batches it gave before this sampler existed.
    """

    def __init__(self, labels: torch.Tensor, batch_size: int, balanced: bool = True) -> None:
        counts = torch.bincount(labels)
        present = counts[counts > 0]
        self.batch_size = batch_size
        self.rows = len(labels)
        self.weights = (1.0 / counts[labels].double()) if balanced and bool((present != present[0]).any()) else None

    def draw(self) -> torch.Tensor:
        """int64 [batch_size] row positions, from torch's global generator (seeded per rank by the loop)."""
        if self.weights is None:
            return torch.randint(self.rows, (self.batch_size,))
        return torch.multinomial(self.weights, self.batch_size, replacement=True)
