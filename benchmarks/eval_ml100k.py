"""Issue 6 §4: the A-LLMRec evaluation table on real data (MovieLens-100K), with the paper's numbers.

    .venv/bin/python benchmarks/eval_ml100k.py --parts main,cross  # reduced CPU run (~25 min on 2 busy cores)
    .venv/bin/python benchmarks/eval_ml100k.py --paper         # the paper's settings (hours-days on a CPU)
    .venv/bin/python benchmarks/eval_ml100k.py --device cuda   # the LLM parts on a GPU

Protocol (FACTS.md §6): MovieLens-100K from ``../shared/data`` (``--data-root``), users with >= 5
interactions, leave-one-out, 1 target + 19 random unseen negatives per test user (seeded; the same
candidates for every model). Rows of the table (Hit@1 over the 20 candidates, random = 0.05):

* **SASRec** — hidden 50, 2 blocks, item table a ``PIMEmbedding`` on the emulated device (``model``
  backend, timing off), evaluated on every test user and on the LLM evaluation users.
* **A-LLMRec** (SmolLM2-135M-Instruct, frozen) — stage 1 over frozen all-MiniLM-L6-v2 embeddings,
  stage 2 projectors trained ``--stage2-steps`` steps; Hit@1 by candidate likelihood (sum of the
  answer's token log-probabilities) on ``--eval-users`` users and by greedy generation (the paper's
  substring rule) on ``--gen-users`` users.
* **LLM-only** — the same LLM zero-shot on the text-only prompt (no training).
* **TALLRec-like** — LoRA (r 8 on q/v) on the text-only prompt, ``--tallrec-steps`` steps.
* **few-shot K = 128 / 256** — SASRec, stage 1 and stage 2 trained on K users only (SASRec as many
  epochs as the full run; stage 2 ``--fewshot-steps`` steps), evaluated on the same test users.
* **cold items** — the evaluation users whose test target is among the least popular 35 % of items
  (popularity counted over the whole dataset, ties by item id).
* **cross-domain** — trained on ML-100K, evaluated on Games-6k with the text-encoder variant
  (:class:`pimcast.models.allmrec.TextLatentRecommender`); SASRec cannot score unseen items.
* **training time** — seconds per stage-2 step of A-LLMRec vs per LoRA step of TALLRec-like (same
  batch, same examples), and the ratio of whole trainings at the paper's schedule (stage 1 +
  5 epochs of stage 2 vs 5 epochs of TALLRec-like over the same users), paper 2.53x.

The A-LLMRec paper trains OPT-6.7B based models for 5 epochs on a GPU on up to 10,000 users; the
reduced run trains a 135 M LLM for minutes on 2 CPU cores, so its LLM rows are far below the paper's
and the few-shot / cross-domain rows are noisy (small user counts: see the ``users`` column). Prints
the table and writes ``build/bench/eval_ml100k.json`` and ``eval_ml100k.png``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent

# FACTS.md §6 (Movies column; cross-domain Movies -> Games)
PAPER = {
    "SASRec": 0.6154, "A-LLMRec": 0.6237, "TALLRec-like": 0.2345, "LLM-only": None,
    "few-shot K=128 A-LLMRec": 0.2518, "few-shot K=128 SASRec": 0.1537,
    "few-shot K=256 A-LLMRec": None, "few-shot K=256 SASRec": None,
    "cold items A-LLMRec": 0.5714, "cold items SASRec": 0.2589,
    "cross-domain A-LLMRec (text variant)": 0.1203, "cross-domain SASRec": 0.0506,
    "train time ratio TALLRec/A-LLMRec": 2.53,
}

# what fits ~25 min on 2 loaded CPU cores (~25-35 s per SmolLM2 training step, ~6 s per user scored)
REDUCED = dict(sasrec_epochs=25, sasrec_dropout=0.2, stage1_epochs=3, stage1_lr=1e-3, stage2_steps=20,
               stage2_lr=1e-3, batch_size=4, max_history=5, tallrec_steps=10, tallrec_lr=1e-3, fewshot=[128, 256],
               fewshot_steps=8, eval_users=25, gen_users=4, cross_users=12, max_new_tokens=16)
PAPER_SETTINGS = dict(sasrec_epochs=200, sasrec_dropout=0.5, stage1_epochs=10, stage1_lr=1e-4, stage2_steps=None,
                      stage2_epochs=5, stage2_lr=1e-4, batch_size=4, max_history=10, tallrec_steps=None,
                      tallrec_epochs=5, tallrec_lr=1e-4, fewshot=[128, 256], fewshot_steps=None, eval_users=None,
                      gen_users=None, cross_users=None, max_new_tokens=32)


def _say(msg: str) -> None:
    print(f"[eval_ml100k {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_cf(ds, split, a, text, seed: int, desc: str):
    """SASRec (item table on the emulated PIM device) + stage 1 on ``split``; returns (sas, stage1, seconds)."""
    from pimcast.host import open_device
    from pimcast.models import allmrec as A
    from pimcast.models import sasrec as S

    dev = open_device("model", timing="off")
    cfg = S.SASRecConfig(dropout=a.sasrec_dropout, epochs=a.sasrec_epochs)
    sas = S.SASRec(ds.num_items, cfg, item_embedding_factory=S.make_item_embedding("model", device=dev), seed=seed)
    t = time.perf_counter()
    h = S.train_sasrec(sas, split, seed=seed, progress=a.progress)
    t_sas = time.perf_counter() - t
    s1 = A.ALLMRecStage1(sas, text_dim=text.shape[1])
    t = time.perf_counter()
    h1 = A.train_stage1(s1, split, text, epochs=a.stage1_epochs, lr=a.stage1_lr, seed=seed, progress=a.progress)
    _say(f"{desc}: SASRec {h['steps']} steps {t_sas:.0f} s (loss {h['loss'][0]:.3f} -> {h['loss'][-1]:.3f}), "
         f"stage 1 {h1['steps']} steps {h1['seconds']:.0f} s")
    return sas, s1, {"sasrec_s": t_sas, "stage1_s": h1["seconds"], "stage1_steps": h1["steps"]}


def _to(stage2, dev) -> None:
    """Move the projectors to the LLM's device; SASRec and stage 1 stay on the host (the item table
    is a PIM table whose weight aliases the emulated device's memory)."""
    stage2.user_proj.to(dev)
    stage2.item_proj.to(dev)


def sasrec_hit(sas, split, users, cand) -> float:
    from pimcast.models.evaluate import rank_metrics
    from pimcast.models.sasrec import sasrec_scores

    if not len(users):
        return float("nan")
    return rank_metrics(sasrec_scores(sas, split, cand, "test", users=list(users)), ks=(1,))["hit@1"]


def llm_eval(model, split, users, cand, titles, a, desc, gen_users=None) -> dict:
    from pimcast.models import allmrec as A

    if not len(users):
        return {"users": 0, "hit@1_likelihood": None}
    ex = A.make_examples(split, "test", cand, users=users, max_history=a.max_history, seed=a.seed)
    r = A.evaluate_llm_recommender(model, ex, titles, generate=False, likelihood=True, progress=a.progress,
                                   desc=desc)
    out = {"users": len(ex), "hit@1_likelihood": r["hit@1_likelihood"], "ndcg@10_likelihood": r["ndcg@10_likelihood"],
           "s_per_user_likelihood": r["seconds_likelihood"] / max(1, len(ex))}
    g = len(ex) if gen_users is None else min(gen_users, len(ex))
    if g:
        rg = A.evaluate_llm_recommender(model, ex[:g], titles, generate=True, likelihood=False,
                                        batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                                        progress=a.progress, desc=desc)
        out.update({"gen_users": g, "hit@1_generate": rg["hit@1_generate"],
                    "s_per_user_generate": rg["seconds_generate"] / g,
                    "answers": [{"target": titles[e.target], "answer": x} for e, x in zip(ex[:8], rg["answers"])]})
    _say(f"{desc}: Hit@1 likelihood {out['hit@1_likelihood']:.3f} on {len(ex)} users"
         + (f", generate {out['hit@1_generate']:.3f} on {g}" if g else ""))
    return out


def train_llm(model, split, users, a, steps, epochs, lr, desc) -> dict:
    from pimcast.models import allmrec as A

    h = A.train_stage2(model, split, epochs=epochs if steps is None else 10 ** 6, batch_size=a.batch_size, lr=lr,
                       users=users, seed=a.seed, max_steps=steps, progress=a.progress, desc=desc,
                       max_history=a.max_history)
    if not all(math.isfinite(v) for v in h["loss"]):
        raise RuntimeError(f"{desc}: non-finite loss")
    k = max(1, len(h["loss"]) // 5)
    _say(f"{desc}: {h['steps']} steps {h['seconds']:.0f} s, loss (mean of first/last {k}) "
         f"{np.mean(h['loss'][:k]):.3f} -> {np.mean(h['loss'][-k:]):.3f}")
    return {"steps": h["steps"], "seconds": h["seconds"], "s_per_step": h["seconds"] / max(1, h["steps"]),
            "loss_first": float(np.mean(h["loss"][:k])), "loss_last": float(np.mean(h["loss"][-k:])),
            "loss": h["loss"]}


def run(a) -> dict:
    from pimcast.models import allmrec as A
    from pimcast.models import datasets as D
    from pimcast.models.llm import encode_texts, load_llm, load_sentence_encoder
    from pimcast.models.tallrec import TALLRec

    torch.manual_seed(a.seed)
    t_all = time.perf_counter()
    res: dict = {"args": {k: v for k, v in vars(a).items()}, "rows": {}, "paper": PAPER,
                 "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                             "device": a.device, "python": platform.python_version(), "torch": torch.__version__,
                             "load_avg": os.getloadavg()[0]}}
    rows = res["rows"]
    ds = D.load_dataset("ml-100k", data_root=a.data_root).filter_users(5)
    split = ds.split()
    n = len(split)
    cand = D.sample_candidates(split, "test", num_negatives=19, seed=a.seed)
    rng = np.random.default_rng(a.seed)
    eval_users = np.sort(rng.permutation(n)[:a.eval_users or n])
    cold = set(ds.cold_items(0.35).tolist())
    cold_users = np.array([u for u in eval_users if split.target(u, "test") in cold], dtype=np.int64)
    res["data"] = ds.stats() | {"eval_users": len(eval_users), "cold_eval_users": len(cold_users)}
    _say(f"{ds!r}; {len(eval_users)} LLM evaluation users ({len(cold_users)} with a cold target)")
    def text_of(name, d):
        """all-MiniLM-L6-v2 embeddings of the item texts (or ``--text-embeddings DIR/<name>.pt``)."""
        if a.text_embeddings:
            t = torch.load(Path(a.text_embeddings) / f"{name}.pt")
            if t.shape[0] != d.num_items + 1:
                raise ValueError(f"{a.text_embeddings}/{name}.pt has {t.shape[0]} rows, expected {d.num_items + 1}")
            return t
        if "enc" not in cache:
            cache["enc"] = load_sentence_encoder()
        t = encode_texts(cache["enc"], d.texts, cache=True)
        if a.save_text_embeddings:
            Path(a.save_text_embeddings).mkdir(parents=True, exist_ok=True)
            torch.save(t, Path(a.save_text_embeddings) / f"{name}.pt")
        return t

    cache: dict = {}
    text = text_of("ml-100k", ds)
    save = lambda: _save(res, a)  # noqa: E731 - partial results survive a timeout

    # ---- full-data models -------------------------------------------------------------------------
    sas, s1, tcf = train_cf(ds, split, a, text, a.seed, "full data")
    rows["SASRec"] = {"hit@1": sasrec_hit(sas, split, range(n), cand), "users": n,
                      "hit@1_eval_users": sasrec_hit(sas, split, eval_users, cand[eval_users])}
    rows["cold items SASRec"] = {"hit@1": sasrec_hit(sas, split, cold_users, cand[cold_users]),
                                 "users": len(cold_users)}
    save()
    _say(f"SASRec Hit@1 {rows['SASRec']['hit@1']:.3f} (all {n}), {rows['SASRec']['hit@1_eval_users']:.3f} "
         f"(eval users), cold {rows['cold items SASRec']['hit@1']:.3f}")

    dev = torch.device(a.device)
    llm, tok = load_llm(a.llm)
    llm.to(dev)
    train_users = [u for u in range(n) if len(split.train[u]) >= 2]
    if a.train_users:
        train_users = list(np.random.default_rng(a.seed + 2).permutation(train_users)[:a.train_users])
    st2 = A.ALLMRecStage2(s1, llm, tok, ds.titles, A.PromptTemplate.for_domain("movie"),
                          match_token_scale=not a.plain_projectors)
    _to(st2, dev)
    tr2 = train_llm(st2, split, train_users, a, a.stage2_steps, a.stage2_epochs, a.stage2_lr, "A-LLMRec stage 2")
    rows["A-LLMRec"] = llm_eval(st2, split, eval_users, cand[eval_users], ds.titles, a, "A-LLMRec",
                                a.gen_users) | {"train": tr2}
    rows["cold items A-LLMRec"] = llm_eval(st2, split, cold_users, cand[cold_users], ds.titles, a,
                                           "A-LLMRec cold", 0)
    save()

    # ---- cross-domain: Games-6k with the text-encoder variant -----------------------------------------
    if "cross" in a.parts:
        g = D.load_dataset("games-6k", data_root=a.data_root).filter_users(5)
        gs = g.split()
        gu = np.sort(np.random.default_rng(a.seed).permutation(len(gs))[:a.cross_users or len(gs)])
        gc = D.sample_candidates(gs, "test", num_negatives=19, seed=a.seed, users=list(gu))
        gt = text_of("games-6k", g)
        xr = A.TextLatentRecommender(st2, g.titles, gt, A.PromptTemplate.for_domain("game"))
        rows["cross-domain A-LLMRec (text variant)"] = llm_eval(xr, gs, gu, gc, g.titles, a, "cross-domain", 0)
        rows["cross-domain SASRec"] = {"hit@1": None, "users": len(gu),
                                       "note": "SASRec has no embedding for Games items (random = 0.05)"}
        save()
    del st2

    # ---- LLM-only zero-shot and TALLRec-like ------------------------------------------------------------
    zs = TALLRec(llm, tok, ds.titles, lora=False)
    rows["LLM-only"] = llm_eval(zs, split, eval_users, cand[eval_users], ds.titles, a, "LLM-only zero-shot",
                                a.gen_users)
    del zs
    llm2, _ = load_llm(a.llm)
    tr = TALLRec(llm2.to(dev), tok, ds.titles)
    trt = train_llm(tr, split, train_users, a, a.tallrec_steps, a.tallrec_epochs, a.tallrec_lr, "TALLRec-like")
    rows["TALLRec-like"] = llm_eval(tr, split, eval_users, cand[eval_users], ds.titles, a, "TALLRec-like",
                                    a.gen_users) | {"train": trt}
    save()
    del tr, llm2

    # ---- training time A-LLMRec vs TALLRec-like ----------------------------------------------------------
    steps_epoch = math.ceil(len(train_users) / a.batch_size)
    allm_total = tcf["stage1_s"] / max(1, a.stage1_epochs) * 10 + tr2["s_per_step"] * steps_epoch * 5
    tall_total = trt["s_per_step"] * steps_epoch * 5
    rows["train time ratio TALLRec/A-LLMRec"] = {
        "per_step_ratio": trt["s_per_step"] / tr2["s_per_step"], "hit@1": None,
        "allmrec_s_per_step": tr2["s_per_step"], "tallrec_s_per_step": trt["s_per_step"],
        "allmrec_paper_schedule_s": allm_total, "tallrec_paper_schedule_s": tall_total,
        "ratio": tall_total / allm_total, "users": len(train_users),
        "note": "stage 1 10 epochs + stage 2 5 epochs vs TALLRec-like 5 epochs over the same training users; "
                "SASRec pre-training excluded as in the paper"}

    # ---- few-shot ---------------------------------------------------------------------------------------
    for K in a.fewshot if "fewshot" in a.parts else []:
        pick = np.sort(np.random.default_rng(a.seed + K).permutation(n)[:K])
        sub = ds.select_users(pick)
        ssp = sub.split()
        fsas, fs1, _ = train_cf(sub, ssp, a, text, a.seed, f"few-shot K={K}")
        rows[f"few-shot K={K} SASRec"] = {"hit@1": sasrec_hit(fsas, split, eval_users, cand[eval_users]),
                                          "users": len(eval_users), "train_users": K}
        fst2 = A.ALLMRecStage2(fs1, llm, tok, ds.titles, A.PromptTemplate.for_domain("movie"),
                               match_token_scale=not a.plain_projectors)
        _to(fst2, dev)
        ftr = train_llm(fst2, ssp, range(len(ssp)), a, a.fewshot_steps, a.stage2_epochs, a.stage2_lr,
                        f"few-shot K={K} stage 2")
        rows[f"few-shot K={K} A-LLMRec"] = llm_eval(fst2, split, eval_users, cand[eval_users], ds.titles, a,
                                                    f"few-shot K={K} A-LLMRec", 0) | {"train": ftr, "train_users": K}
        del fst2
        save()

    res["seconds"] = time.perf_counter() - t_all
    return res


def _save(res: dict, a) -> None:
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def table(res: dict) -> str:
    lines = [f"{'row':40s} {'ours Hit@1':>11s} {'gen Hit@1':>10s} {'users':>6s} {'paper':>7s}",
             "-" * 78]
    for name, r in res["rows"].items():
        p = PAPER.get(name)
        if name.startswith("train time") and r.get("ratio") is not None:
            lines.append(f"{name:40s} {r['ratio']:>10.2f}x {'':>10s} {r['users']:>6d} {p:>6.2f}x"
                         f"   (per step {r['per_step_ratio']:.2f}x: {r['allmrec_s_per_step']:.2f} s vs "
                         f"{r['tallrec_s_per_step']:.2f} s)")
            continue
        h = r.get("hit@1", r.get("hit@1_likelihood"))
        g = r.get("hit@1_generate")
        lines.append(f"{name:40s} {('n/a' if h is None else f'{h:.4f}'):>11s} "
                     f"{('' if g is None else f'{g:.4f}'):>10s} {r.get('users', 0):>6d} "
                     f"{('' if p is None else f'{p:.4f}'):>7s}")
    lines.append("Hit@1 over 1 + 19 candidates (random 0.05); LLM rows: candidate likelihood ('ours') and greedy "
                 "generation ('gen'); paper: OPT-6.7B, Amazon Movies.")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in res["rows"] if not k.startswith("train time")]
    ours = [res["rows"][k].get("hit@1", res["rows"][k].get("hit@1_likelihood")) for k in names]
    paper = [PAPER.get(k) for k in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(12, 4.5))
    ax.bar(x - 0.2, [v if v is not None else 0 for v in ours], 0.4, label="pimcast (SmolLM2-135M, reduced)")
    ax.bar(x + 0.2, [v if v is not None else 0 for v in paper], 0.4, label="paper (OPT-6.7B, Movies)")
    ax.axhline(0.05, color="k", ls="--", lw=0.8, label="random (1/20)")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Hit@1")
    ax.legend(fontsize=8)
    ax.set_title("A-LLMRec evaluation, MovieLens-100K")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--paper", action="store_true", help="the paper's settings (all users, full epochs)")
    ap.add_argument("--data-root", default=None, help="folder holding ml-100k/ and amazon2018-games-llmrank/")
    ap.add_argument("--llm", default="smollm2")
    ap.add_argument("--device", default="cpu", help="torch device of the LLM parts (cpu, cuda)")
    ap.add_argument("--parts", default="main,cross,fewshot", help="comma list of main,cross,fewshot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the idle cores)")
    ap.add_argument("--sasrec-epochs", type=int)
    ap.add_argument("--stage1-epochs", type=int)
    ap.add_argument("--stage2-steps", type=int)
    ap.add_argument("--stage2-lr", type=float)
    ap.add_argument("--tallrec-steps", type=int)
    ap.add_argument("--fewshot-steps", type=int)
    ap.add_argument("--train-users", type=int, default=None, help="stage-2 / TALLRec training users (default all)")
    ap.add_argument("--eval-users", type=int)
    ap.add_argument("--gen-users", type=int)
    ap.add_argument("--cross-users", type=int)
    ap.add_argument("--text-embeddings", default=None, help="folder of precomputed <dataset>.pt sentence embeddings")
    ap.add_argument("--save-text-embeddings", default=None, help="write the sentence embeddings used to this folder")
    ap.add_argument("--plain-projectors", action="store_true", help="the paper's projectors (no token-scale norm)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    ap.add_argument("--out", default=str(REPO / "build" / "bench" / "eval_ml100k.json"))
    a = ap.parse_args(argv)
    base = dict(PAPER_SETTINGS if a.paper else REDUCED)
    base.setdefault("stage2_epochs", 1)
    base.setdefault("tallrec_epochs", 1)
    for k, v in base.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    for k in ("eval_users", "gen_users", "cross_users", "stage2_steps", "tallrec_steps", "fewshot_steps",
              "train_users", "sasrec_epochs", "stage1_epochs"):
        v = getattr(a, k)
        if v is not None and v < (1 if k not in ("gen_users",) else 0):
            ap.error(f"--{k.replace('_', '-')} must be >= 1, got {v}")
    a.parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    bad = [p for p in a.parts if p not in ("main", "cross", "fewshot")]
    if bad:
        ap.error(f"--parts: unknown part(s) {', '.join(bad)} (known: main, cross, fewshot)")
    if a.threads is None and a.device == "cpu":
        from pimcast.models.train import _auto_threads  # idle cores (1 on a loaded 2-core machine)

        a.threads = _auto_threads()
    if a.threads:
        torch.set_num_threads(a.threads)
    res = run(a)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    txt = table(res)
    print(txt)
    res["table"] = txt
    out.write_text(json.dumps(res, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
