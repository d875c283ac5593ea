"""``golden`` backend: the PyTorch golden model (:mod:`pimcast.models.tensor_cast`), no timing.

Every operation is computed by the golden model's own functions; :meth:`stats` of a golden
device reports counts (lookups, requests, bytes, FMAs) but no cycles, commands or energy.
"""
from __future__ import annotations

import torch

from pimcast.host.backends.base import Backend
from pimcast.models import tensor_cast as tc

__all__ = ["GoldenBackend"]


class GoldenBackend(Backend):
    name = "golden"
    has_timing = False

    def gather_reduce(self, table, dim, indices, starts, lengths, weights):
        if starts.numel() == 0:
            return torch.zeros(0, dim, dtype=torch.float32)
        return tc.gather_reduce(table, indices, starts, weights)
