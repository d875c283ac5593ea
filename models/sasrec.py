"""SASRec — the collaborative-filtering backbone of A-LLMRec (FACTS.md §6).

Architecture (Kang & McAuley 2018, as in the pmixer/SASRec.pytorch code A-LLMRec builds on):
``x = item_emb(seq)·√d + pos_emb(pos)`` → dropout → ``num_blocks`` × [LayerNorm → causal
single-head attention (query = normed x, key/value = x) → residual → LayerNorm → point-wise FFN
(d→d→d, ReLU, dropout) → residual → zero the padded positions] → LayerNorm. Hidden 50, 2 blocks,
1 head, max length 50, dropout 0.5 (paper) — :class:`SASRecConfig`. Training: BCE on the dot
products of the per-position features with the next item (positive) and one random item not in the
user's sequence (negative), padded positions masked.

The item table (``(num_items + 1) × d``, row 0 = padding) is built by a factory so the table can
live on the emulated PIM device: ``backend="model"`` (the default) ``| "golden" | "rtl"``
(``pimcast.host.PIMEmbedding`` on ``open_device(backend)``), ``"torch"`` (plain
``torch.nn.Embedding(sparse=True)``), or any ``item_embedding_factory(num_embeddings, dim, init_weight)``
returning a module that maps a LongTensor of ids to rows. The row-0 padding is handled by the
model (padded positions are multiplied by 0), so a factory need not support ``padding_idx``.

Optimisers (:func:`train_sasrec`): Adam (lr 1e-3, β 0.9/0.98) for the dense weights; for the item
table ``"sparse_adam"`` (``torch.optim.SparseAdam``: it updates a ``PIMEmbedding`` in place through
its ``weight``, which aliases the device image) or
``"sgd"`` (``torch.optim.SGD`` on the sparse gradient), ``"pim_sgd"`` (``pimcast.host.optim.PIMSGD``: the same update done inside the device
with SCATTER_SGD, PIM backends only), or a callable ``params -> optimizer``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Optional

import numpy as np
import torch
from torch import nn

from .datasets import Split

__all__ = ["SASRecConfig", "SASRec", "make_item_embedding", "pad_left", "sample_negatives",
           "train_sasrec", "sasrec_scores", "BACKENDS"]

BACKENDS = ("torch", "model", "golden", "rtl")


@dataclass
class SASRecConfig:
    hidden: int = 50
    num_blocks: int = 2
    num_heads: int = 1
    max_len: int = 50
    dropout: float = 0.5
    lr: float = 1e-3
    betas: tuple = (0.9, 0.98)
    batch_size: int = 128
    epochs: int = 200
    item_optimizer: str = "sparse_adam"  # or "sgd"
    item_lr: Optional[float] = None      # default: lr (sparse_adam) / 1.0 (sgd, as BCE grads are small)


class _SequentialGrad(torch.autograd.Function):
    """Row gather whose backward coalesces duplicate rows *sequentially in lookup order*
    (``index_add_``) into a coalesced sparse gradient — pimcast's tensor-cast numerics."""

    @staticmethod
    def forward(ctx, weight, flat, padding_idx):
        ctx.save_for_backward(flat)
        ctx.shape = weight.shape
        ctx.padding_idx = padding_idx
        return weight.index_select(0, flat)

    @staticmethod
    def backward(ctx, grad_out):
        (flat,) = ctx.saved_tensors
        keep = flat != ctx.padding_idx
        ids, g = flat[keep], grad_out[keep].contiguous()
        unique = torch.unique(ids)  # sorted
        dense = torch.zeros(ctx.shape, dtype=g.dtype).index_add_(0, ids, g)  # sequential per row
        grad = torch.sparse_coo_tensor(unique[None], dense[unique], ctx.shape, is_coalesced=True,
                                       check_invariants=False)
        return grad, None, None


class _TorchItemEmbedding(nn.Embedding):
    """``torch.nn.Embedding(sparse=True, padding_idx=0)`` holding a given initial table.

    ``sequential_grad=True`` replaces PyTorch's embedding backward with one that sums duplicate
    rows sequentially in lookup order and returns a coalesced sparse gradient — the numerics of
    the PIM tensor-cast backward, so the two paths can be compared bit for bit. PyTorch's own
    sparse path leaves the gradient uncoalesced and its SGD adds the duplicates one by one
    (``w − lr·g₁ − lr·g₂ …``), which differs from ``w − lr·(g₁ + g₂ …)`` in the last bits.
    """

    def __init__(self, num_embeddings: int, dim: int, init_weight: torch.Tensor, sequential_grad: bool = False):
        super().__init__(num_embeddings, dim, padding_idx=0, sparse=True, _weight=init_weight.clone())
        self.sequential_grad = sequential_grad

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.sequential_grad:
            return super().forward(input)
        flat = input.reshape(-1)
        return _SequentialGrad.apply(self.weight, flat, self.padding_idx).reshape(*input.shape, -1)

    def read_weight(self) -> torch.Tensor:
        return self.weight.detach().clone()


def make_item_embedding(backend: str = "torch", device=None,
                        sequential_grad: bool = False) -> Callable[[int, int, torch.Tensor], nn.Module]:
    """A factory ``(num_embeddings, dim, init_weight) -> module`` for the given backend.

    ``"torch"``: plain sparse ``torch.nn.Embedding`` (``sequential_grad=True``: with pimcast's
    sequential duplicate-row summation in the backward; see :class:`_TorchItemEmbedding`). ``"model" | "golden" | "rtl"``: a
    ``pimcast.host.PIMEmbedding(sparse=True, padding_idx=0)`` whose table lives in the memory of
    ``device`` (a :class:`pimcast.host.Device`; default: a new ``open_device(backend)``). Its
    ``weight`` aliases the device image, so stock optimisers (SparseAdam, SGD) and the in-memory
    ``pimcast.host.optim.PIMSGD`` both work. Raises ``RuntimeError`` when the host runtime is not
    available in this installation.
    """
    if backend == "torch":
        return lambda n, d, init: _TorchItemEmbedding(n, d, init, sequential_grad=sequential_grad)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    try:
        from pimcast.host import PIMEmbedding, open_device  # type: ignore[attr-defined]
    except ImportError as e:  # pragma: no cover - depends on the host runtime being present
        raise RuntimeError(f"backend {backend!r} needs pimcast.host.PIMEmbedding, which is not "
                           f"available ({e}); use backend='torch'") from e

    def factory(num_embeddings: int, dim: int, init_weight: torch.Tensor) -> nn.Module:
        dev = device if device is not None else open_device(backend)
        return PIMEmbedding(num_embeddings, dim, padding_idx=0, sparse=True, _weight=init_weight.clone(),
                            pim_device=dev)

    return factory


class _PointWiseFFN(nn.Module):
    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, d)
        self.drop1 = nn.Dropout(dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(torch.relu(self.fc1(x))))) + x


class SASRec(nn.Module):
    """Self-attentive sequential recommender.

    Parameters
    ----------
    num_items : int — item ids are ``1..num_items``; ``0`` is padding.
    config : SASRecConfig
    backend : ``"model"`` (default: ``pimcast.host.PIMEmbedding`` on the emulated device) ``| "golden"
        | "rtl" | "torch"`` (plain ``torch.nn.Embedding``) — where the item table lives.
    item_embedding_factory : overrides ``backend``; ``(num_embeddings, dim, init_weight) -> module``.
    seed : int — initialisation seed (the initial item table is identical across backends).

    Members
    -------
    item_emb : the item table module; ``pos_emb`` : ``(max_len + 1) × d``, row 0 = padding.
    """

    def __init__(self, num_items: int, config: SASRecConfig | None = None, backend: str = "model",
                 item_embedding_factory: Callable | None = None, seed: int = 0):
        super().__init__()
        cfg = config or SASRecConfig()
        if cfg.hidden % cfg.num_heads:
            raise ValueError(f"hidden ({cfg.hidden}) must be divisible by num_heads ({cfg.num_heads})")
        self.config = cfg
        self.num_items = num_items
        d = cfg.hidden
        g = torch.Generator().manual_seed(seed)
        init = torch.empty(num_items + 1, d)
        nn.init.xavier_normal_(init, generator=g)
        init[0] = 0.0
        factory = item_embedding_factory or make_item_embedding(backend)
        self.backend = backend if item_embedding_factory is None else "custom"
        self.item_emb = factory(num_items + 1, d, init)
        self.pos_emb = nn.Embedding(cfg.max_len + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.attn_norms = nn.ModuleList()
        self.attns = nn.ModuleList()
        self.ffn_norms = nn.ModuleList()
        self.ffns = nn.ModuleList()
        for _ in range(cfg.num_blocks):
            self.attn_norms.append(nn.LayerNorm(d, eps=1e-8))
            self.attns.append(nn.MultiheadAttention(d, cfg.num_heads, dropout=cfg.dropout, batch_first=True))
            self.ffn_norms.append(nn.LayerNorm(d, eps=1e-8))
            self.ffns.append(_PointWiseFFN(d, cfg.dropout))
        self.last_norm = nn.LayerNorm(d, eps=1e-8)
        for name, p in self.named_parameters():
            if name.startswith("item_emb") or p.dim() < 2:
                continue
            nn.init.xavier_normal_(p, generator=g)
        with torch.no_grad():
            self.pos_emb.weight[0] = 0.0

    # -- parameter groups ------------------------------------------------------------------------
    def item_parameters(self) -> list[nn.Parameter]:
        return list(self.item_emb.parameters())

    def dense_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.item_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def item_table(self) -> torch.Tensor:
        """The current item table as a host tensor (read back from the device for PIM backends)."""
        if hasattr(self.item_emb, "read_weight"):
            return self.item_emb.read_weight()
        return self.item_emb.weight.detach().clone()

    # -- forward ------------------------------------------------------------------------------------
    def embed_items(self, ids: torch.Tensor) -> torch.Tensor:
        """Item rows for ``ids`` of any shape (a flat gather through the item table)."""
        flat = ids.reshape(-1)
        return self.item_emb(flat).reshape(*ids.shape, -1)

    def log2feats(self, seq: torch.Tensor) -> torch.Tensor:
        """Per-position features ``[B, L, d]`` for left-padded ``seq`` ``[B, L]``."""
        B, L = seq.shape
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        mask = (seq != 0).unsqueeze(-1).to(torch.float32)
        x = self.embed_items(seq) * math.sqrt(self.config.hidden)
        pos = torch.arange(1, L + 1, device=seq.device).expand(B, L) * (seq != 0)
        x = self.emb_dropout(x + self.pos_emb(pos)) * mask
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), diagonal=1)
        for norm_a, attn, norm_f, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
            q = norm_a(x)
            out, _ = attn(q, x, x, attn_mask=causal, need_weights=False)
            x = q + out
            x = ffn(norm_f(x)) * mask
        return self.last_norm(x)

    def forward(self, seq: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor):
        """Positive and negative logits ``[B, L]`` (one negative per position)."""
        feats = self.log2feats(seq)
        B, L = seq.shape
        rows = self.embed_items(torch.cat([pos, neg], dim=1))  # one gather for both
        pos_e, neg_e = rows[:, :L], rows[:, L:]
        return (feats * pos_e).sum(-1), (feats * neg_e).sum(-1)

    def loss(self, seq, pos, neg) -> torch.Tensor:
        pos_logits, neg_logits = self(seq, pos, neg)
        m = pos != 0
        bce = nn.functional.binary_cross_entropy_with_logits
        return (bce(pos_logits[m], torch.ones_like(pos_logits[m]), reduction="sum")
                + bce(neg_logits[m], torch.zeros_like(neg_logits[m]), reduction="sum")) / m.sum().clamp(min=1)

    def user_representation(self, seq: torch.Tensor) -> torch.Tensor:
        """The last position's feature ``[B, d]`` (the user vector A-LLMRec uses)."""
        return self.log2feats(seq)[:, -1, :]

    def predict(self, seq: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of candidate ``items`` ``[B, C]``."""
        u = self.user_representation(seq)
        return (self.embed_items(items) * u.unsqueeze(1)).sum(-1)


# --------------------------------------------------------------------------------------------------
# Batching and training
# --------------------------------------------------------------------------------------------------


def pad_left(seqs: Iterable[np.ndarray], max_len: int) -> torch.Tensor:
    """Left-pad (with 0) / truncate to the last ``max_len`` items → LongTensor ``[B, max_len]``."""
    seqs = list(seqs)
    out = np.zeros((len(seqs), max_len), dtype=np.int64)
    for k, s in enumerate(seqs):
        s = s[-max_len:]
        if len(s):
            out[k, max_len - len(s):] = s
    return torch.from_numpy(out)


def sample_negatives(shape, num_items: int, exclude: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Uniform item ids in ``1..num_items`` with row ``b`` avoiding ``exclude[b]``."""
    out = rng.integers(1, num_items + 1, size=shape)
    for b in range(shape[0]):
        bad = np.isin(out[b], exclude[b])
        tries = 0
        while bad.any():
            out[b, bad] = rng.integers(1, num_items + 1, size=int(bad.sum()))
            bad = np.isin(out[b], exclude[b])
            tries += 1
            if tries > 100:
                raise ValueError("cannot sample negatives: the user has seen (almost) every item")
    return out


def _batch(split: Split, users: np.ndarray, max_len: int, rng: np.random.Generator):
    seqs, poss, excl = [], [], []
    for u in users:
        tr = split.train[u]
        seqs.append(tr[:-1])
        poss.append(tr[1:])
        excl.append(split.full_sequence(u))
    seq = pad_left(seqs, max_len)
    pos = pad_left(poss, max_len)
    neg = torch.from_numpy(sample_negatives(tuple(pos.shape), split.dataset.num_items, excl, rng))
    neg = neg * (pos != 0)
    return seq, pos, neg


def _item_optimizer(model: SASRec, kind, lr: float):
    params = model.item_parameters()
    if callable(kind):
        return kind(params)
    if not params:  # a device-resident table updated by its own optimiser
        return None
    if kind == "sparse_adam":
        return torch.optim.SparseAdam(params, lr=lr, betas=model.config.betas)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if kind == "pim_sgd":  # in-memory SCATTER_SGD on the device (PIM backends only)
        from pimcast.host.optim import PIMSGD

        return PIMSGD(params, lr=lr)
    raise ValueError(f"item_optimizer must be 'sparse_adam', 'sgd', 'pim_sgd' or a callable, not {kind!r}")


def train_sasrec(model: SASRec, split: Split, epochs: int | None = None, batch_size: int | None = None,
                 lr: float | None = None, item_optimizer=None, item_lr: float | None = None,
                 seed: int = 0, max_steps: int | None = None, progress: bool = False,
                 on_step: Callable[[int, float], None] | None = None) -> dict:
    """Train ``model`` on the training part of ``split`` (next-item BCE, one negative per position).

    Users are shuffled each epoch with ``seed``; users whose training part has < 2 items are
    skipped. Returns ``{"loss": [per-step losses], "epoch_loss": [...], "seconds": float,
    "steps": int}``. Deterministic for a given seed on the CPU.
    """
    cfg = model.config
    epochs = cfg.epochs if epochs is None else epochs
    batch_size = batch_size or cfg.batch_size
    lr = cfg.lr if lr is None else lr
    kind = item_optimizer or cfg.item_optimizer
    if item_lr is None:
        item_lr = cfg.item_lr if cfg.item_lr is not None else (lr if kind == "sparse_adam" else 1.0)
    dense_opt = torch.optim.Adam(model.dense_parameters(), lr=lr, betas=cfg.betas)
    item_opt = _item_optimizer(model, kind, item_lr)
    rng = np.random.default_rng(seed)
    users = np.array([u for u in range(len(split)) if len(split.train[u]) >= 2], dtype=np.int64)
    if len(users) == 0:
        raise ValueError("no user has >= 2 training interactions")
    hist: dict = {"loss": [], "epoch_loss": [], "steps": 0}
    t0 = time.perf_counter()
    model.train()
    step = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs * math.ceil(len(users) / batch_size), desc="SASRec", unit="batch")
    for _ in range(epochs):
        order = rng.permutation(users)
        ep = []
        for b0 in range(0, len(order), batch_size):
            seq, pos, neg = _batch(split, order[b0:b0 + batch_size], cfg.max_len, rng)
            dense_opt.zero_grad(set_to_none=True)
            if item_opt is not None:
                item_opt.zero_grad(set_to_none=True)
            loss = model.loss(seq, pos, neg)
            loss.backward()
            dense_opt.step()
            if item_opt is not None:
                item_opt.step()
            v = float(loss.detach())
            hist["loss"].append(v)
            ep.append(v)
            step += 1
            if on_step:
                on_step(step, v)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{v:.4f}")
            if max_steps is not None and step >= max_steps:
                break
        hist["epoch_loss"].append(float(np.mean(ep)))
        if max_steps is not None and step >= max_steps:
            break
    if bar is not None:
        bar.close()
    model.eval()
    hist["steps"] = step
    hist["seconds"] = time.perf_counter() - t0
    return hist


@torch.no_grad()
def sasrec_scores(model: SASRec, split: Split, candidates: np.ndarray, stage: str = "test",
                  users: Iterable[int] | None = None, batch_size: int = 256) -> np.ndarray:
    """Scores ``[U, C]`` of ``candidates`` (column 0 = target) for the split users (``users``
    default: all, in order, matching ``candidates``' rows)."""
    users = list(range(len(split))) if users is None else list(users)
    if len(users) != len(candidates):
        raise ValueError(f"{len(users)} users but {len(candidates)} candidate rows")
    was = model.training
    model.eval()
    out = []
    for b0 in range(0, len(users), batch_size):
        us = users[b0:b0 + batch_size]
        seq = pad_left([split.history(u, stage) for u in us], model.config.max_len)
        items = torch.as_tensor(candidates[b0:b0 + batch_size], dtype=torch.long)
        out.append(model.predict(seq, items).numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, candidates.shape[1]), dtype=np.float32)


def config_dict(cfg: SASRecConfig) -> dict:
    return asdict(cfg)
