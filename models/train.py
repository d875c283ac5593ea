"""``pimcast train``: SASRec on the emulated PIM device, then A-LLMRec stages 1–2 with a frozen LLM.

One run (:func:`run_training`) does, in order:

1. **data** — the dataset of the config (``synthetic`` by default; ``ml-100k``, ``amazon-scientific``,
   … or a path), users with ≥ ``min_interactions`` kept, optionally the first ``max_users``;
   leave-one-out split; 1 + 19 test candidates per user (seeded).
2. **SASRec** — item table a ``PIMEmbedding`` on ``open_device(backend, config, timing=…)``
   (``model`` by default; ``golden``; ``rtl`` where registered), Adam for the dense weights and the
   configured item optimizer; a checkpoint after every epoch. Test Hit@1 / NDCG@10 over the 20
   candidates.
3. **stage 1** — item/text alignment over frozen all-MiniLM-L6-v2 sentence embeddings of the item
   texts (``random``: a seeded stand-in for tests); checkpoint per epoch.
4. **stage 2** — user/item projectors into a frozen LLM (SmolLM2-135M-Instruct by default,
   ``tiny`` = a random-weight 2-layer Llama for tests, or a local path), LM loss on the target
   title; checkpoint per epoch (projectors only, never the LLM).
5. **evaluation** — A-LLMRec Hit@1 on ``llm_users`` test users by greedy generation (substring
   rule) and by candidate likelihood; SASRec on the same users beside it.
6. **hardware** — ``device.stats()`` of the embedding work of every stage (the device statistics are
   reset at each stage), and the modeled step time of this run's SASRec embedding workload (one
   real training batch: input, positive and negative item rows + positions) on the PIM systems vs the
   CPU-centric and GPU baselines (:func:`pimcast.host.bench.run_point`).

Outputs in the run folder (``runs/train-<timestamp>/`` by default): ``config.yaml`` (the resolved
config), ``metrics.json``, ``checkpoints/*.pt``, ``loss_curves.png``, ``hit_at_1.png``,
``hardware.png``, ``report.md``.

Config files (``configs/train/*.yaml``) are validated strictly against :data:`SCHEMA`: an unknown
key or a value of the wrong type is a :class:`pimcast.config.ConfigError` naming the key and the file.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from pimcast.config import ConfigError, load_yaml, resolve

__all__ = ["SCHEMA", "DEFAULTS", "load_config", "validate_config", "run_training", "TrainingError",
           "add_arguments", "main"]

REPO = Path(__file__).resolve().parent.parent


class TrainingError(RuntimeError):
    """Training produced an unusable result (NaN losses, …)."""


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------

_NUM = (int, float)
_OPT_INT = (int, type(None))
_OPT_NUM = (int, float, type(None))
_STR = (str,)

# section -> key -> (allowed types, default, optional check (value -> error text or None))
def _pos(v):
    return None if v is None or v > 0 else "must be > 0"


def _nonneg(v):
    return None if v is None or v >= 0 else "must be >= 0"


def _unit(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


def _cands(v):
    return None if v >= 2 else "must be >= 2 (the target + at least one negative)"


SCHEMA: dict[str, dict[str, tuple]] = {
    "seed": {"": (_OPT_INT[:1], 0, _nonneg)},
    "threads": {"": (_OPT_INT, None, _pos)},   # torch threads; null = auto (see _auto_threads)
    "dataset": {
        "name": (_STR, "synthetic", None),
        "synthetic": ((dict,), {}, None),   # keyword arguments of generate_synthetic (checked there)
        "min_interactions": ((int,), 5, _nonneg),
        "max_users": (_OPT_INT, None, _pos),
        "domain": (_STR, "auto", _one_of("auto", "movie", "game", "item")),
        "data_root": ((str, type(None)), None, None),
    },
    "device": {
        "backend": (_STR, "model", _one_of("model", "golden", "rtl")),
        "config": (_STR, "rank-ddr4-3200", None),
        "timing": (_STR, "fast", _one_of("fast", "analytic", "off")),
    },
    "sasrec": {
        "hidden": ((int,), 50, _pos),
        "num_blocks": ((int,), 2, _pos),
        "num_heads": ((int,), 1, _pos),
        "max_len": ((int,), 50, _pos),
        "dropout": (_NUM, 0.5, _unit),
        "lr": (_NUM, 1e-3, _pos),
        "batch_size": ((int,), 128, _pos),
        "epochs": ((int,), 200, _pos),
        "item_optimizer": (_STR, "sparse_adam", _one_of("sparse_adam", "sgd", "pim_sgd")),
        "item_lr": (_OPT_NUM, None, _pos),
        "max_steps": (_OPT_INT, None, _pos),
    },
    "stage1": {
        "text_encoder": (_STR, "minilm", None),   # minilm | random | a SentenceTransformer folder
        "latent": ((int,), 128, _pos),
        "alpha": (_NUM, 0.5, _nonneg),
        "beta": (_NUM, 0.5, _nonneg),
        "epochs": ((int,), 10, _pos),
        "batch_size": ((int,), 32, _pos),
        "lr": (_NUM, 1e-4, _pos),
        "max_steps": (_OPT_INT, None, _pos),
    },
    "stage2": {
        "llm": (_STR, "smollm2", None),
        "epochs": ((int,), 5, _pos),
        "batch_size": ((int,), 4, _pos),
        "lr": (_NUM, 1e-4, _pos),
        "train_users": (_OPT_INT, None, _pos),
        "max_history": ((int,), 10, _pos),
        "num_candidates": ((int,), 20, _cands),
        "max_steps": (_OPT_INT, None, _pos),
    },
    "evaluation": {
        "num_candidates": ((int,), 20, _cands),
        "sasrec_users": (_OPT_INT, None, _pos),
        "llm_users": ((int,), 100, _nonneg),
        "llm_num_candidates": ((int,), 20, _cands),
        "max_history": ((int,), 10, _pos),
        "max_new_tokens": ((int,), 32, _pos),
        "batch_size": ((int,), 4, _pos),
        "generate": ((bool,), True, None),
        "likelihood": ((bool,), True, None),
    },
    "hardware": {
        "speedup": ((bool,), True, None),
        "systems": ((list,), ["rank@dimm", "bankgroup@dimm"], None),
        "cpu_channels": ((int,), 1, _pos),
        "timing": (_STR, "analytic", _one_of("fast", "analytic")),
        "gpu": (_STR, "H100", None),
        "gpu_efficiency": (_NUM, 0.6, lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
    },
}

DEFAULTS: dict[str, Any] = {sec: (spec[""][1] if "" in spec else {k: copy.deepcopy(v[1]) for k, v in spec.items()})
                            for sec, spec in SCHEMA.items()}


def _check_value(where: str, value, types, check) -> None:
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"{where}: expected {'/'.join(t.__name__ for t in types)}, got a boolean ({value})")
    if not isinstance(value, types):
        raise ConfigError(f"{where}: expected {'/'.join(t.__name__ for t in types)}, got {type(value).__name__} "
                          f"({value!r})")
    if check is not None and value is not None:
        err = check(value)
        if err:
            raise ConfigError(f"{where} = {value!r}: {err}")


def validate_config(raw: dict, source: str = "<config>") -> dict:
    """Merge ``raw`` over :data:`DEFAULTS` and check every key and value; unknown keys are errors
    naming the key and ``source``. Returns the resolved config (a new dict)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    cfg = copy.deepcopy(DEFAULTS)
    for sec, val in raw.items():
        if sec not in SCHEMA:
            raise ConfigError(f"{source}: unknown key {sec!r} (known: {', '.join(SCHEMA)})")
        spec = SCHEMA[sec]
        if "" in spec:
            types, _, check = spec[""]
            _check_value(f"{source}: {sec}", val, types, check)
            cfg[sec] = val
            continue
        if val is None:
            continue
        if not isinstance(val, dict):
            raise ConfigError(f"{source}: {sec}: expected a mapping, got {type(val).__name__}")
        for key, v in val.items():
            if key not in spec:
                raise ConfigError(f"{source}: unknown key {sec}.{key!s} (known in {sec}: {', '.join(spec)})")
            types, _, check = spec[key]
            _check_value(f"{source}: {sec}.{key}", v, types, check)
            cfg[sec][key] = v
    from pimcast.host.bench import SYSTEMS
    for s in cfg["hardware"]["systems"]:
        if s not in SYSTEMS:
            raise ConfigError(f"{source}: hardware.systems: unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    from pimcast.host.baselines import GPUS
    if cfg["hardware"]["gpu"] not in GPUS:
        raise ConfigError(f"{source}: hardware.gpu: unknown GPU {cfg['hardware']['gpu']!r} (known: {', '.join(GPUS)})")
    if cfg["sasrec"]["hidden"] % cfg["sasrec"]["num_heads"]:
        raise ConfigError(f"{source}: sasrec.hidden ({cfg['sasrec']['hidden']}) must be divisible by "
                          f"sasrec.num_heads ({cfg['sasrec']['num_heads']})")
    if cfg["sasrec"]["item_optimizer"] == "pim_sgd" and cfg["device"]["backend"] not in ("model", "golden", "rtl"):
        raise ConfigError(f"{source}: sasrec.item_optimizer pim_sgd needs a PIM backend")
    if cfg["dataset"]["name"] != "synthetic" and cfg["dataset"]["synthetic"]:
        raise ConfigError(f"{source}: dataset.synthetic is only for dataset.name: synthetic "
                          f"(got name {cfg['dataset']['name']!r})")
    return cfg


def load_config(name_or_path: str | os.PathLike = "default", overrides: Optional[dict] = None) -> dict:
    """Load a ``configs/train`` preset (by name) or a YAML path, validate it, apply ``overrides``
    (``{"section.key": value}``, validated the same way)."""
    path = resolve("train", name_or_path)
    raw = load_yaml(path)
    cfg = validate_config(raw, str(path))
    if overrides:
        nested: dict = {}
        for dotted, v in overrides.items():
            sec, _, key = dotted.partition(".")
            if key:
                nested.setdefault(sec, {})[key] = v
            else:
                nested[sec] = v
        merged = copy.deepcopy(cfg)
        for sec, v in nested.items():
            if isinstance(v, dict) and isinstance(merged.get(sec), dict):
                merged[sec].update(v)
            else:
                merged[sec] = v
        cfg = validate_config(merged, f"{path} (+ command-line options)")
    cfg["_source"] = str(path)
    return cfg


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _domain(cfg: dict, ds_name: str) -> str:
    d = cfg["dataset"]["domain"]
    if d != "auto":
        return d
    n = ds_name.lower()
    if "game" in n:
        return "game"
    if "scientific" in n or "amazon" in n:
        return "item"
    return "movie"


def _auto_threads() -> int:
    """Torch threads for this run: the idle cores (CPU count minus the 1-minute load average, at
    least 1). On a busy machine PyTorch's default (one thread per core) oversubscribes the cores and
    its OpenMP workers spin: a SmolLM2 forward measured 5-8x slower with 2 threads than with 1 on 2
    cores under a load of 8."""
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - no load average on this platform
        return n
    return int(max(1, min(n, round(n - load + 0.49))))


def _load_data(cfg: dict):
    from pimcast.models import datasets as D

    dc = cfg["dataset"]
    name = dc["name"]
    if name == "synthetic":
        try:
            ds = D.generate_synthetic(**dc["synthetic"])
        except TypeError as e:
            raise ConfigError(f"dataset.synthetic: {e}") from None
        except ValueError as e:
            raise ConfigError(f"dataset.synthetic: {e}") from None
    else:
        ds = D.load_dataset(name, data_root=dc["data_root"])
    ds = ds.filter_users(dc["min_interactions"])
    if dc["max_users"] is not None:
        ds = ds.select_users(range(min(dc["max_users"], ds.num_users)))
    if ds.num_users < 2:
        raise D.DatasetError(f"{name}: only {ds.num_users} users with >= {dc['min_interactions']} interactions")
    return ds


def _stats_summary(st: dict) -> dict:
    """The figures of ``device.stats()`` the report shows."""
    out = {"lookups": st["lookups"], "rows_updated": st["rows_updated"], "fmas": st["fmas"],
           "requests": dict(st["requests"]), "bytes": dict(st["bytes"]), "bytes_moved": st["bytes_moved"],
           "ops": dict(st["ops"])}
    if st.get("timing"):
        out.update({"cycles": st["cycles"], "ns": st["ns"], "GBps": st["GBps"], "dram": dict(st["dram"]),
                    "row_hit_rate": (st["dram"]["row_hits"] / max(1, st["dram"]["reads"] + st["dram"]["writes"])),
                    "energy_uJ": st["energy_pJ"]["total"] / 1e6, "timing_sampled": st["timing_sampled"]})
    else:
        out.update({"cycles": None, "ns": None})
    return out


def _finite(name: str, values) -> None:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and not np.isfinite(arr).all():
        k = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise TrainingError(f"{name}: non-finite loss {arr[k]} at step {k + 1}")


def _clone_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _sasrec_workload(sas, split, batch_size: int, seed: int):
    """This run's SASRec embedding workload: one training batch (input items, positives, negatives of
    every position, as SASRec gathers them) over the item table + the position table."""
    import torch

    from pimcast.host.workloads import TableBatch, Workload
    from pimcast.models.sasrec import pad_left, sample_negatives

    L = sas.config.max_len
    rng = np.random.default_rng(seed)
    users = [u for u in range(len(split)) if len(split.train[u]) >= 2]
    pick = rng.permutation(users)[:batch_size]
    seq = pad_left([split.train[u][:-1] for u in pick], L)
    pos = pad_left([split.train[u][1:] for u in pick], L)
    neg = torch.from_numpy(sample_negatives(tuple(pos.shape), split.dataset.num_items,
                                            [split.full_sequence(u) for u in pick], rng)) * (pos != 0)
    item_idx = torch.cat([seq.reshape(-1), pos.reshape(-1), neg.reshape(-1)]).to(torch.int64)
    pos_idx = torch.arange(L, dtype=torch.int64).repeat(len(pick))
    n = split.dataset.num_items
    tabs = [TableBatch("item", n + 1, sas.config.hidden, item_idx, torch.arange(item_idx.numel())),
            TableBatch("pos", L, sas.config.hidden, pos_idx, torch.arange(pos_idx.numel()))]
    cfg = {"batch": len(pick), "users": len(pick), "max_len": L, "dim": sas.config.hidden, "pooling": 1,
           "num_items": n, "dataset": split.dataset.name, "seed": seed, "dist": f"run:{split.dataset.name}",
           "num_tables": 2}
    return Workload(f"sasrec-run-{split.dataset.name}", tabs, cfg, "sasrec")


class _Progress:
    def __init__(self, enabled: bool, total: int, desc: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="batch", file=sys.stderr)

    def update(self, loss: float):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def close(self):
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


def run_training(cfg: dict, out: str | os.PathLike | None = None, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> dict:
    """Run SASRec → stage 1 → stage 2 → evaluation → hardware figures for a validated ``cfg``
    (:func:`load_config`) into the folder ``out`` (default ``runs/train-<timestamp>``).

    Returns the metrics dict (also written to ``metrics.json``). Raises :class:`TrainingError` when a
    loss is not finite, :class:`pimcast.config.ConfigError` / ``DatasetError`` on bad input.
    PyTorch's thread count is set for the run (config ``threads``) and restored afterwards.
    """
    import torch

    prev = torch.get_num_threads()
    try:
        return _run_training(cfg, out, progress, log)
    finally:
        torch.set_num_threads(prev)


def _run_training(cfg: dict, out, progress: bool, log) -> dict:
    """Run SASRec → stage 1 → stage 2 → evaluation → hardware figures for a validated ``cfg``
    (:func:`load_config`) into the folder ``out`` (default ``runs/train-<timestamp>``).

    Returns the metrics dict (also written to ``metrics.json``). Raises :class:`TrainingError` when a
    loss is not finite, :class:`pimcast.config.ConfigError` / ``DatasetError`` on bad input.
    """
    import torch

    from pimcast.models import allmrec as A
    from pimcast.models import datasets as D
    from pimcast.models import sasrec as S
    from pimcast.models.evaluate import rank_metrics

    say = log or (lambda m: print(f"[pimcast train] {m}", file=sys.stderr, flush=True))
    out = Path(out) if out else REPO / "runs" / f"train-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    ckpt = out / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    seed = int(cfg["seed"])
    torch.manual_seed(seed)
    torch.set_num_threads(cfg["threads"] or _auto_threads())
    timings: dict[str, float] = {}
    metrics: dict[str, Any] = {"started": datetime.now().isoformat(timespec="seconds"),
                               "config": {k: v for k, v in cfg.items() if not k.startswith("_")},
                               "config_file": cfg.get("_source"), "out": str(out), "seconds": timings,
                               "torch_threads": torch.get_num_threads()}
    import yaml
    (out / "config.yaml").write_text(yaml.safe_dump(metrics["config"], sort_keys=False))
    t_all = time.perf_counter()

    # ---- data ------------------------------------------------------------------------------------
    t = time.perf_counter()
    ds = _load_data(cfg)
    split = ds.split()
    ev = cfg["evaluation"]
    n_test = len(split) if ev["sasrec_users"] is None else min(ev["sasrec_users"], len(split))
    test_users = list(range(n_test))
    cand = D.sample_candidates(split, "test", num_negatives=ev["num_candidates"] - 1, seed=seed,
                               users=test_users)
    timings["data"] = time.perf_counter() - t
    metrics["dataset"] = ds.stats() | {"split_users": len(split)}
    say(f"data: {ds!r}, {len(split)} split users ({timings['data']:.1f} s)")

    # ---- device + SASRec --------------------------------------------------------------------------
    dc = cfg["device"]
    from pimcast.host import open_device

    try:
        dev = open_device(dc["backend"], dc["config"], timing=dc["timing"])
    except ValueError as e:
        raise ConfigError(f"device: {e}") from None
    sc = cfg["sasrec"]
    scfg = S.SASRecConfig(hidden=sc["hidden"], num_blocks=sc["num_blocks"], num_heads=sc["num_heads"],
                          max_len=sc["max_len"], dropout=float(sc["dropout"]), lr=float(sc["lr"]),
                          batch_size=sc["batch_size"], epochs=sc["epochs"], item_optimizer=sc["item_optimizer"],
                          item_lr=None if sc["item_lr"] is None else float(sc["item_lr"]))
    sas = S.SASRec(ds.num_items, scfg, item_embedding_factory=S.make_item_embedding(dc["backend"], device=dev),
                   seed=seed)
    sas.backend = dc["backend"]
    n_train = sum(1 for u in range(len(split)) if len(split.train[u]) >= 2)
    steps_per_epoch = math.ceil(n_train / scfg.batch_size)
    device_stats: dict[str, dict] = {}
    ep_state = {"epoch": 0}

    def sasrec_step(step: int, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingError(f"SASRec: non-finite loss {loss} at step {step}")
        if step % steps_per_epoch == 0 or step == sc["max_steps"]:
            ep_state["epoch"] += 1
            torch.save({"epoch": ep_state["epoch"], "step": step, "config": S.config_dict(scfg),
                        "num_items": ds.num_items, "state_dict": _clone_state(sas)},
                       ckpt / f"sasrec-epoch{ep_state['epoch']}.pt")

    dev.reset_stats()
    t = time.perf_counter()
    say(f"SASRec: {scfg.epochs} epochs x {steps_per_epoch} steps, item table on the {dc['backend']!r} device "
        f"({dc['config']}, timing {dc['timing']})")
    hist_sas = S.train_sasrec(sas, split, seed=seed, max_steps=sc["max_steps"], progress=progress,
                              on_step=sasrec_step)
    timings["sasrec_train"] = time.perf_counter() - t
    _finite("SASRec", hist_sas["loss"])
    device_stats["sasrec_train"] = _stats_summary(dev.stats())
    if hist_sas["steps"]:
        device_stats["sasrec_train"]["ns_per_step"] = (device_stats["sasrec_train"]["ns"] or 0) / hist_sas["steps"]

    dev.reset_stats()
    t = time.perf_counter()
    scores = S.sasrec_scores(sas, split, cand, "test", users=test_users)
    sas_metrics = rank_metrics(scores, ks=(1, 5, 10))
    timings["sasrec_eval"] = time.perf_counter() - t
    device_stats["sasrec_eval"] = _stats_summary(dev.stats())
    metrics["sasrec"] = {"loss": hist_sas["loss"], "epoch_loss": hist_sas["epoch_loss"], "steps": hist_sas["steps"],
                         "test": sas_metrics}
    say(f"SASRec: Hit@1 {sas_metrics['hit@1']:.3f}, NDCG@10 {sas_metrics['ndcg@10']:.3f} on {n_test} users "
        f"({timings['sasrec_train']:.1f} s train)")

    # ---- stage 1 ------------------------------------------------------------------------------------
    s1c = cfg["stage1"]
    t = time.perf_counter()
    if s1c["text_encoder"] == "random":
        text = torch.randn(ds.num_items + 1, 384, generator=torch.Generator().manual_seed(seed))
    else:
        from pimcast.models.llm import encode_texts, load_sentence_encoder

        enc = load_sentence_encoder(None if s1c["text_encoder"] == "minilm" else s1c["text_encoder"])
        text = encode_texts(enc, ds.texts, cache=True)
        del enc
    timings["text_embeddings"] = time.perf_counter() - t
    stage1 = A.ALLMRecStage1(sas, text_dim=text.shape[1], latent=s1c["latent"], alpha=float(s1c["alpha"]),
                             beta=float(s1c["beta"]))
    opt1 = torch.optim.Adam(stage1.trainable_parameters(), lr=float(s1c["lr"]))
    rng1 = np.random.default_rng(seed + 1)
    users1 = np.array([u for u in range(len(split)) if len(split.train[u]) >= 2], dtype=np.int64)
    hist1: dict = {"loss": [], "parts": {k: [] for k in ("match", "item_recon", "text_recon", "rec")},
                   "epoch_loss": []}
    total1 = s1c["epochs"] * math.ceil(len(users1) / s1c["batch_size"])
    if s1c["max_steps"]:
        total1 = min(total1, s1c["max_steps"])
    bar = _Progress(progress, total1, "A-LLMRec stage 1")
    dev.reset_stats()
    t = time.perf_counter()
    stage1.train()
    step = 0
    for ep in range(s1c["epochs"]):
        order = rng1.permutation(users1)
        ep_losses = []
        for b0 in range(0, len(order), s1c["batch_size"]):
            seq, pos, neg = A._stage1_batch(split, order[b0:b0 + s1c["batch_size"]], scfg.max_len, rng1)
            with torch.no_grad():
                u = sas.user_representation(seq)
                pe = sas.embed_items(pos)
                ne = sas.embed_items(neg)
            parts = stage1.losses(u, pe, ne, text[pos], text[neg])
            opt1.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt1.step()
            v = float(parts["loss"].detach())
            if not math.isfinite(v):
                raise TrainingError(f"A-LLMRec stage 1: non-finite loss {v} at step {step + 1}")
            hist1["loss"].append(v)
            ep_losses.append(v)
            for k in hist1["parts"]:
                hist1["parts"][k].append(float(parts[k].detach()))
            step += 1
            bar.update(v)
            if s1c["max_steps"] and step >= s1c["max_steps"]:
                break
        hist1["epoch_loss"].append(float(np.mean(ep_losses)))
        torch.save({"epoch": ep + 1, "step": step, "item": _clone_state(stage1.item), "text": _clone_state(stage1.text),
                    "latent": s1c["latent"], "text_dim": int(text.shape[1])}, ckpt / f"stage1-epoch{ep + 1}.pt")
        if s1c["max_steps"] and step >= s1c["max_steps"]:
            break
    bar.close()
    stage1.eval()
    timings["stage1_train"] = time.perf_counter() - t
    device_stats["stage1"] = _stats_summary(dev.stats())
    metrics["stage1"] = hist1 | {"steps": step}
    say(f"stage 1: {step} steps, loss {hist1['loss'][0]:.4f} -> {hist1['loss'][-1]:.4f} "
        f"({timings['stage1_train']:.1f} s)")

    # ---- stage 2 -------------------------------------------------------------------------------------
    s2c = cfg["stage2"]
    t = time.perf_counter()
    llm_name = s2c["llm"]
    if llm_name == "tiny":
        from pimcast.models.llm import tiny_llm

        llm, tok = tiny_llm(ds.titles[1:], hidden=32, layers=2, heads=2, seed=seed)
    else:
        from pimcast.models.llm import load_llm

        try:
            llm, tok = load_llm(llm_name)
        except FileNotFoundError as e:
            raise ConfigError(f"stage2.llm: {e}") from None
    timings["llm_load"] = time.perf_counter() - t
    template = A.PromptTemplate.for_domain(_domain(cfg, ds.name))
    stage2 = A.ALLMRecStage2(stage1, llm, tok, ds.titles, template)
    opt2 = torch.optim.Adam(stage2.trainable_parameters(), lr=float(s2c["lr"]))
    users2 = [u for u in range(len(split)) if len(split.train[u]) >= 2]
    if s2c["train_users"] is not None:
        users2 = list(np.random.default_rng(seed + 2).permutation(users2)[:s2c["train_users"]])
    total2 = s2c["epochs"] * math.ceil(len(users2) / s2c["batch_size"])
    if s2c["max_steps"]:
        total2 = min(total2, s2c["max_steps"])
    hist2: dict = {"loss": [], "epoch_loss": []}
    bar = _Progress(progress, total2, "A-LLMRec stage 2")
    dev.reset_stats()
    t = time.perf_counter()
    stage2.train()
    step = 0
    for ep in range(s2c["epochs"]):
        exs = A.make_examples(split, "train", users=users2, max_history=s2c["max_history"],
                              num_negatives=s2c["num_candidates"] - 1, seed=seed * 1000 + ep)
        order = np.random.default_rng(seed * 1000 + ep).permutation(len(exs))
        ep_losses = []
        for b0 in range(0, len(order), s2c["batch_size"]):
            batch = [exs[k] for k in order[b0:b0 + s2c["batch_size"]]]
            loss = stage2.loss(batch)
            opt2.zero_grad(set_to_none=True)
            loss.backward()
            opt2.step()
            v = float(loss.detach())
            if not math.isfinite(v):
                raise TrainingError(f"A-LLMRec stage 2: non-finite loss {v} at step {step + 1}")
            hist2["loss"].append(v)
            ep_losses.append(v)
            step += 1
            bar.update(v)
            if s2c["max_steps"] and step >= s2c["max_steps"]:
                break
        hist2["epoch_loss"].append(float(np.mean(ep_losses)) if ep_losses else float("nan"))
        torch.save({"epoch": ep + 1, "step": step, "user_proj": _clone_state(stage2.user_proj),
                    "item_proj": _clone_state(stage2.item_proj), "llm": llm_name},
                   ckpt / f"stage2-epoch{ep + 1}.pt")
        if s2c["max_steps"] and step >= s2c["max_steps"]:
            break
    bar.close()
    stage2.eval()
    timings["stage2_train"] = time.perf_counter() - t
    device_stats["stage2"] = _stats_summary(dev.stats())
    metrics["stage2"] = hist2 | {"steps": step, "llm": llm_name,
                                 "llm_params": int(sum(p.numel() for p in llm.parameters())),
                                 "train_users": len(users2)}
    if hist2["loss"]:
        say(f"stage 2: {step} steps, loss {hist2['loss'][0]:.4f} -> {hist2['loss'][-1]:.4f} "
            f"({timings['stage2_train']:.1f} s, LLM {llm_name})")

    # ---- A-LLMRec evaluation --------------------------------------------------------------------------
    n_llm = min(ev["llm_users"], len(split))
    llm_eval: dict = {"users": n_llm}
    if n_llm and (ev["generate"] or ev["likelihood"]):
        eval_users = list(range(n_llm))
        cand_llm = D.sample_candidates(split, "test", num_negatives=ev["llm_num_candidates"] - 1, seed=seed,
                                       users=eval_users)
        examples = A.make_examples(split, "test", cand_llm, users=eval_users, max_history=ev["max_history"],
                                   seed=seed)
        dev.reset_stats()
        t = time.perf_counter()
        say(f"evaluating A-LLMRec on {n_llm} test users x {ev['llm_num_candidates']} candidates")
        r = A.evaluate_llm_recommender(stage2, examples, ds.titles, generate=ev["generate"],
                                       likelihood=ev["likelihood"], batch_size=ev["batch_size"],
                                       max_new_tokens=ev["max_new_tokens"], progress=progress)
        timings["allmrec_eval"] = time.perf_counter() - t
        device_stats["allmrec_eval"] = _stats_summary(dev.stats())
        llm_eval.update({k: v for k, v in r.items() if k != "answers"})
        llm_eval["examples"] = [{"target": ds.titles[e.target], "answer": a}
                                for e, a in zip(examples[:8], r.get("answers", [])[:8])]
        sub = rank_metrics(S.sasrec_scores(sas, split, cand_llm, "test", users=eval_users), ks=(1, 10))
        llm_eval["sasrec_same_users"] = {"hit@1": sub["hit@1"], "ndcg@10": sub["ndcg@10"]}
        llm_eval["random_hit@1"] = 1.0 / ev["llm_num_candidates"]
    metrics["allmrec"] = llm_eval
    if "hit@1_generate" in llm_eval or "hit@1_likelihood" in llm_eval:
        say(f"A-LLMRec: Hit@1 generate {llm_eval.get('hit@1_generate', float('nan')):.3f}, likelihood "
            f"{llm_eval.get('hit@1_likelihood', float('nan')):.3f} (SASRec on the same users "
            f"{llm_eval['sasrec_same_users']['hit@1']:.3f})")

    # ---- hardware ---------------------------------------------------------------------------------------
    metrics["device"] = {"backend": dev.backend_name, "config": dev.cfg.name, "timing": dc["timing"],
                         "item_table": {"rows": ds.num_items + 1, "dim": scfg.hidden},
                         "stages": device_stats,
                         "total": {k: sum((s.get(k) or 0) for s in device_stats.values())
                                   for k in ("cycles", "ns", "lookups", "bytes_moved")}}
    hw = cfg["hardware"]
    if hw["speedup"]:
        from pimcast.host import bench

        t = time.perf_counter()
        wl = _sasrec_workload(sas, split, scfg.batch_size, seed)
        systems = {k: v for k, v in bench._systems(hw["cpu_channels"]).items() if k in hw["systems"]}
        rec = bench.run_point(wl, systems, timing=hw["timing"], cpu_timing="analytic", gpu=hw["gpu"],
                              gpu_eff=float(hw["gpu_efficiency"]), max_requests=262_144)
        timings["speedup_model"] = time.perf_counter() - t
        metrics["speedup"] = {
            "workload": wl.config | {"nnz": rec["nnz"], "unique": rec["unique"], "unique_ratio": rec["unique_ratio"]},
            "pim_ns": {k: p["ns"] for k, p in rec["pim"].items()},
            "pim_stage_ns": {k: {s: p[f"{s}_ns"] for s in ("forward", "backward", "update")}
                             for k, p in rec["pim"].items()},
            "cpu_ns": {k: c["ns"] for k, c in rec["cpu"].items()},
            "gpu_ns": rec["gpu"]["ns"], "gpu": rec["gpu"]["gpu"], "gpu_efficiency": rec["gpu"]["efficiency"],
            "vs_cpu": rec["speedup"], "vs_gpu": rec["speedup_vs_gpu"],
            "timing": hw["timing"],
        }
        say("speedup of the PIM step on this run's SASRec batch: " + ", ".join(
            f"{k}: {v:.2f}x vs CPU-centric, {rec['speedup_vs_gpu'][k]:.3f}x vs {hw['gpu']}" for k, v in rec["speedup"].items()))
    timings["total"] = time.perf_counter() - t_all

    # ---- outputs ----------------------------------------------------------------------------------------
    metrics["summary"] = _summary(metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default))
    plots = make_plots(metrics, out)
    metrics["plots"] = plots
    write_report(metrics, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default))
    say(f"done in {timings['total']:.1f} s: {out / 'report.md'}")
    return metrics


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _summary(m: dict) -> dict:
    s: dict[str, Any] = {
        "dataset": m["dataset"]["name"], "users": m["dataset"]["users"], "items": m["dataset"]["items"],
        "sasrec_hit@1": m["sasrec"]["test"]["hit@1"], "sasrec_ndcg@10": m["sasrec"]["test"]["ndcg@10"],
        "sasrec_test_users": m["sasrec"]["test"]["users"],
        "allmrec_hit@1_generate": m["allmrec"].get("hit@1_generate"),
        "allmrec_hit@1_likelihood": m["allmrec"].get("hit@1_likelihood"),
        "allmrec_test_users": m["allmrec"]["users"],
        "sasrec_hit@1_same_users": m["allmrec"].get("sasrec_same_users", {}).get("hit@1"),
        "device_cycles_total": m["device"]["total"]["cycles"],
        "device_cycles_sasrec_train": m["device"]["stages"]["sasrec_train"]["cycles"],
        "seconds": {k: round(v, 2) for k, v in m["seconds"].items()},
    }
    if "speedup" in m:
        s["speedup_vs_cpu"] = {k: round(v, 3) for k, v in m["speedup"]["vs_cpu"].items()}
        s["speedup_vs_gpu"] = {k: round(v, 4) for k, v in m["speedup"]["vs_gpu"].items()}
    all_losses = m["sasrec"]["loss"] + m["stage1"]["loss"] + m["stage2"]["loss"]
    s["nan_losses"] = bool(np.any(~np.isfinite(np.asarray(all_losses, dtype=np.float64)))) if all_losses else False
    return s


# --------------------------------------------------------------------------------------------------
# plots and report
# --------------------------------------------------------------------------------------------------


def make_plots(m: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, (("sasrec", "SASRec (BCE)"), ("stage1", "A-LLMRec stage 1"),
                                       ("stage2", "A-LLMRec stage 2 (LM loss)"))):
        y = m[key]["loss"]
        ax.plot(np.arange(1, len(y) + 1), y, lw=1)
        if len(y) > 8:
            k = max(2, len(y) // 10)
            ax.plot(np.arange(k, len(y) + 1), np.convolve(y, np.ones(k) / k, mode="valid"), lw=2,
                    label=f"mean of {k}")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=110)
    plt.close(fig)
    files.append("loss_curves.png")

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names, vals, colors = [], [], []
    a = m["allmrec"]
    rows = [("random", a.get("random_hit@1", 0.05), "#999999"),
            (f"SASRec\n({m['sasrec']['test']['users']} users)", m["sasrec"]["test"]["hit@1"], "#4477aa")]
    if "sasrec_same_users" in a:
        rows.append((f"SASRec\n({a['users']} users)", a["sasrec_same_users"]["hit@1"], "#66ccee"))
    if "hit@1_generate" in a:
        rows.append(("A-LLMRec\ngenerate", a["hit@1_generate"], "#ee6677"))
    if "hit@1_likelihood" in a:
        rows.append(("A-LLMRec\nlikelihood", a["hit@1_likelihood"], "#aa3377"))
    for n, v, c in rows:
        names.append(n)
        vals.append(v)
        colors.append(c)
    ax.bar(names, vals, color=colors)
    for i, v in enumerate(vals):
        ax.text(i, v + 0.01, f"{v:.3f}", ha="center", fontsize=8)
    ax.set_ylabel("Hit@1 (1 + 19 candidates)")
    ax.set_title(f"Hit@1 on {m['dataset']['name']} (LLM: {m['stage2']['llm']})", fontsize=10)
    ax.set_ylim(0, max(vals + [0.1]) * 1.2)
    fig.tight_layout()
    fig.savefig(out / "hit_at_1.png", dpi=110)
    plt.close(fig)
    files.append("hit_at_1.png")

    st = m["device"]["stages"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    names = list(st)
    ax = axes[0]
    cyc = [st[n]["cycles"] or 0 for n in names]
    ax.bar(names, cyc, color="#4477aa")
    ax.set_yscale("log" if max(cyc, default=0) > 0 and min(c for c in cyc if c > 0) * 100 < max(cyc) else "linear")
    ax.set_title(f"device cycles per stage ({m['device']['backend']}, {m['device']['config']})", fontsize=9)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax = axes[1]
    rd = [st[n]["bytes"]["dram_read"] / 1e6 for n in names]
    wr = [st[n]["bytes"]["dram_write"] / 1e6 for n in names]
    hits = [st[n].get("row_hit_rate") for n in names]
    ax.bar(names, rd, label="DRAM read")
    ax.bar(names, wr, bottom=rd, label="DRAM write")
    for i, h in enumerate(hits):
        if h is not None:
            ax.text(i, rd[i] + wr[i], f"hit {h:.0%}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("MB")
    ax.set_title("device DRAM bytes (row-buffer hit rate)", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax = axes[2]
    if "speedup" in m:
        sp = m["speedup"]
        sys_names = list(sp["vs_cpu"])
        x = np.arange(len(sys_names))
        ax.bar(x - 0.2, [sp["vs_cpu"][k] for k in sys_names], 0.4, label="vs CPU-centric")
        ax.bar(x + 0.2, [sp["vs_gpu"][k] for k in sys_names], 0.4, label=f"vs {sp['gpu']} ({sp['gpu_efficiency']:.0%} HBM)")
        for i, k in enumerate(sys_names):
            ax.text(i - 0.2, sp["vs_cpu"][k], f"{sp['vs_cpu'][k]:.2f}x", ha="center", va="bottom", fontsize=7)
            ax.text(i + 0.2, sp["vs_gpu"][k], f"{sp['vs_gpu'][k]:.3f}x", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, sys_names, fontsize=8)
        ax.set_yscale("log")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_title("PIM step speedup, this run's SASRec batch", fontsize=9)
        ax.legend(fontsize=7)
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "hardware.png", dpi=110)
    plt.close(fig)
    files.append("hardware.png")
    return files


def _f(v, fmt="{:.3f}"):
    return "—" if v is None else fmt.format(v)


def write_report(m: dict, out: Path) -> Path:
    s = m["summary"]
    a = m["allmrec"]
    lines = [f"# pimcast train — {m['dataset']['name']}", "",
             f"Run folder `{out}`, config `{m.get('config_file')}`, started {m['started']}, "
             f"torch threads {m['torch_threads']}.", "",
             "## Data", "",
             f"{m['dataset']['users']} users, {m['dataset']['items']} items, {m['dataset']['interactions']} "
             f"interactions (mean length {m['dataset']['mean_length']:.1f}); leave-one-out, 1 + "
             f"{m['config']['evaluation']['num_candidates'] - 1} candidates per test user.", "",
             "## Recommendation quality (test split)", "",
             "| model | users | Hit@1 | NDCG@10 |", "|---|---|---|---|",
             f"| random | | {1 / m['config']['evaluation']['num_candidates']:.3f} | |",
             f"| SASRec | {s['sasrec_test_users']} | {s['sasrec_hit@1']:.3f} | {s['sasrec_ndcg@10']:.3f} |"]
    if "sasrec_same_users" in a:
        lines.append(f"| SASRec (LLM eval users) | {a['users']} | {a['sasrec_same_users']['hit@1']:.3f} | "
                     f"{a['sasrec_same_users']['ndcg@10']:.3f} |")
    if a.get("random_hit@1") is not None and abs(a["random_hit@1"] - 1 / m["config"]["evaluation"]["num_candidates"]) > 1e-12:
        lines.append(f"| random (LLM eval, {m['config']['evaluation']['llm_num_candidates']} candidates) | | "
                     f"{a['random_hit@1']:.3f} | |")
    if "hit@1_generate" in a:
        lines.append(f"| A-LLMRec ({m['stage2']['llm']}), greedy generation | {a['users']} | {a['hit@1_generate']:.3f} | |")
    if "hit@1_likelihood" in a:
        lines.append(f"| A-LLMRec ({m['stage2']['llm']}), likelihood | {a['users']} | {a['hit@1_likelihood']:.3f} | "
                     f"{_f(a.get('ndcg@10_likelihood'))} |")
    lines += ["", "![Hit@1](hit_at_1.png)", "", "## Training", "",
              "| stage | steps | first loss | last loss | seconds |", "|---|---|---|---|---|"]
    for key, name, tkey in (("sasrec", "SASRec", "sasrec_train"), ("stage1", "A-LLMRec stage 1", "stage1_train"),
                            ("stage2", f"A-LLMRec stage 2 ({m['stage2']['llm']})", "stage2_train")):
        y = m[key]["loss"]
        lines.append(f"| {name} | {m[key]['steps']} | {_f(y[0] if y else None, '{:.4f}')} | "
                     f"{_f(y[-1] if y else None, '{:.4f}')} | {m['seconds'].get(tkey, 0):.1f} |")
    lines += ["", "Wall time per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in m["seconds"].items()), "",
              "![losses](loss_curves.png)", "", "## Hardware (embedding work on the emulated device)", "",
              f"Backend `{m['device']['backend']}`, PIM config `{m['device']['config']}`, timing "
              f"`{m['device']['timing']}`; item table {m['device']['item_table']['rows']} × "
              f"{m['device']['item_table']['dim']} fp32.", "",
              "| stage | lookups | cycles | device time (µs) | DRAM read MB | DRAM write MB | row-hit rate |",
              "|---|---|---|---|---|---|---|"]
    for n, st in m["device"]["stages"].items():
        lines.append(f"| {n} | {st['lookups']} | {_f(st['cycles'], '{:,}')} | {_f(st['ns'] and st['ns'] / 1e3, '{:.1f}')} | "
                     f"{st['bytes']['dram_read'] / 1e6:.2f} | {st['bytes']['dram_write'] / 1e6:.2f} | "
                     f"{_f(st.get('row_hit_rate'), '{:.1%}')} |")
    if "speedup" in m:
        sp = m["speedup"]
        w = sp["workload"]
        lines += ["", f"Modeled step time of one SASRec training batch of this run ({w['users']} users × "
                      f"{w['max_len']} positions, {w['nnz']} item+position lookups, {w['unique']} unique rows; "
                      f"PIM timing `{sp['timing']}`, CPU-centric analytic, GPU {sp['gpu']} at "
                      f"{sp['gpu_efficiency']:.0%} of peak HBM):", "",
                  "| PIM system | PIM µs | CPU-centric µs | GPU µs | speedup vs CPU | speedup vs GPU |",
                  "|---|---|---|---|---|---|"]
        for k in sp["vs_cpu"]:
            cpu_ns = list(sp["cpu_ns"].values())[0] if len(sp["cpu_ns"]) == 1 else None
            lines.append(f"| {k} | {sp['pim_ns'][k] / 1e3:.1f} | {_f(cpu_ns and cpu_ns / 1e3, '{:.1f}')} | "
                         f"{sp['gpu_ns'] / 1e3:.2f} | {sp['vs_cpu'][k]:.2f}× | {sp['vs_gpu'][k]:.3f}× |")
    lines += ["", "![hardware](hardware.png)", ""]
    if a.get("examples"):
        lines += ["## Sample answers (greedy generation)", ""]
        lines += [f"- target “{e['target']}” → `{e['answer'].strip()[:120]}`" for e in a["examples"][:5]]
        lines.append("")
    lines += ["Checkpoints: `checkpoints/` (after every epoch of each stage); metrics: `metrics.json`.", ""]
    p = out / "report.md"
    p.write_text("\n".join(lines))
    return p


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default",
                   help="configs/train preset name or YAML path (default: default — synthetic, ~5 min)")
    p.add_argument("--dataset", default=None,
                   help="override dataset.name: synthetic, ml-100k, ml-1m, amazon-scientific, games-6k, or a path")
    p.add_argument("--data-root", default=None, help="folder holding the named datasets (default ../shared/data)")
    p.add_argument("--backend", choices=("model", "golden", "rtl"), default=None, help="device backend of the item table")
    p.add_argument("--out", default=None, help="run folder (default runs/train-<timestamp>)")
    p.add_argument("--llm", default=None, help="stage-2 LLM: smollm2, tiny, or a local HF folder / .gguf")
    p.add_argument("--max-users", type=int, default=None, help="keep the first N users (after the min-interactions filter)")
    p.add_argument("--sasrec-epochs", type=int, default=None)
    p.add_argument("--stage1-epochs", type=int, default=None)
    p.add_argument("--stage2-epochs", type=int, default=None)
    p.add_argument("--stage2-steps", type=int, default=None, help="cap on stage-2 steps")
    p.add_argument("--eval-users", type=int, default=None, help="test users for the A-LLMRec evaluation")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _overrides(args) -> dict:
    ov = {}
    for attr, key in (("dataset", "dataset.name"), ("data_root", "dataset.data_root"), ("backend", "device.backend"),
                      ("llm", "stage2.llm"), ("max_users", "dataset.max_users"), ("sasrec_epochs", "sasrec.epochs"),
                      ("stage1_epochs", "stage1.epochs"), ("stage2_epochs", "stage2.epochs"),
                      ("stage2_steps", "stage2.max_steps"), ("eval_users", "evaluation.llm_users"), ("seed", "seed")):
        v = getattr(args, attr, None)
        if v is not None:
            ov[key] = v
    if ov.get("dataset.name", "synthetic") != "synthetic":
        ov["dataset.synthetic"] = {}
    return ov


def main(args) -> int:
    from pimcast.models.datasets import DatasetError

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        cfg = load_config(args.config, _overrides(args))
    except ConfigError as e:
        print(f"pimcast train: error: {e}", file=sys.stderr)
        return 2
    try:
        m = run_training(cfg, args.out, progress=not args.no_progress)
    except (ConfigError, DatasetError) as e:
        print(f"pimcast train: error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"pimcast train: training failed: {e}", file=sys.stderr)
        return 1
    s = m["summary"]
    print(json.dumps({k: v for k, v in s.items()}, indent=1, default=_json_default))
    print(f"report: {Path(m['out']) / 'report.md'}")
    return 0
