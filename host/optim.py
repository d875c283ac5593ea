"""In-memory optimizers for PIM tables: the update runs inside the device on the coalesced rows.

``PIMSGD`` (device SCATTER_SGD: ``w = fma(-lr, g, w)``), ``PIMAdagrad`` (state sum in device
memory) and ``PIMRowWiseAdagrad`` (one fp32 state per row in device memory) — bit-identical to
:func:`pimcast.models.tensor_cast.sgd` / ``adagrad`` / ``rowwise_adagrad`` ("exact" optimizers:
one update per unique row), and ``PIMSGD`` to ``torch.optim.SGD`` (no momentum / weight decay).

They take the ``weight`` Parameters of :class:`~pimcast.host.embedding.PIMEmbeddingBag` /
``PIMEmbedding`` (any other parameter is rejected).  ``weight.grad`` may be sparse (coalesced or
not; duplicates are summed by ``coalesce()``) or dense (rows whose gradient is entirely +-0 are
skipped: for these optimizers an all-zero gradient row leaves the row and its state unchanged).
"""
from __future__ import annotations

import torch

__all__ = ["PIMOptimizer", "PIMSGD", "PIMAdagrad", "PIMRowWiseAdagrad"]


def _rows_and_grads(g: torch.Tensor):
    if g.is_sparse:
        g = g.coalesce()
        return g.indices()[0].contiguous(), g.values().to(torch.float32).contiguous()
    g = g.detach().to(torch.float32)
    touched = (g != 0).any(1) | torch.isnan(g).any(1)
    rows = torch.nonzero(touched).flatten()
    return rows, g[rows].contiguous()


def _check_lr(lr) -> None:
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr < 0:
        raise ValueError(f"Invalid learning rate: {lr}")


def _check_eps(eps) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise ValueError(f"Invalid epsilon value: {eps}")


class PIMOptimizer(torch.optim.Optimizer):
    """Base: validates that every parameter is a PIM table, then applies :meth:`_update` per table."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if getattr(p, "_pim_device", None) is None:
                    raise ValueError(f"{type(self).__name__} only updates PIM tables (the weight of a "
                                     f"PIMEmbeddingBag/PIMEmbedding); got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, G = _rows_and_grads(p.grad)
                self._update(p._pim_device, p._pim_table, rows, G, group)
        return loss

    def _update(self, dev, table, rows, G, group):
        raise NotImplementedError


class PIMSGD(PIMOptimizer):
    """Plain SGD in device memory (SCATTER_SGD); bit-identical to ``torch.optim.SGD(lr=lr)``."""

    def __init__(self, params, lr: float = 1e-3):
        _check_lr(lr)
        super().__init__(params, dict(lr=lr))

    def _update(self, dev, table, rows, G, group):
        dev.scatter_sgd(table, rows, G, group["lr"])


class _PIMAdagradBase(PIMOptimizer):
    """Adagrad family: ``lr`` / ``eps`` checked, the update is the device kernel ``scatter_<kind>``
    and the state lives in device memory under ``kind`` (read back with :meth:`device_state`)."""

    kind = ""          # device kernel / state name: "adagrad" | "rowwise_adagrad"
    default_eps = 0.0

    def __init__(self, params, lr: float = 1e-2, eps: float | None = None):
        eps = self.default_eps if eps is None else eps
        _check_lr(lr)
        _check_eps(eps)
        super().__init__(params, dict(lr=lr, eps=eps))

    def _update(self, dev, table, rows, G, group):
        getattr(dev, f"scatter_{self.kind}")(table, rows, G, group["lr"], group["eps"])

    def device_state(self, p) -> torch.Tensor:
        """The optimizer state of table ``p`` as held in device memory."""
        return p._pim_device.state(p._pim_table, self.kind)


class PIMAdagrad(_PIMAdagradBase):
    """Exact Adagrad with the state sum in device memory (``torch.optim.Adagrad`` semantics, no
    decay; eps 1e-10 by default)."""

    kind = "adagrad"
    default_eps = 1e-10

    def state_sum(self, p) -> torch.Tensor:
        """The per-element squared-gradient sum ``[rows, dim]``."""
        return self.device_state(p)


class PIMRowWiseAdagrad(_PIMAdagradBase):
    """Exact row-wise Adagrad (FBGEMM EXACT_ROWWISE_ADAGRAD) with one fp32 state per row in device
    memory (eps 1e-8 by default)."""

    kind = "rowwise_adagrad"
    default_eps = 1e-8

    def state_rows(self, p) -> torch.Tensor:
        """The per-row state ``[rows]``."""
        return self.device_state(p)
