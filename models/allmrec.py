"""A-LLMRec (Kim et al., KDD 2024): align a frozen SASRec with a frozen LLM (FACTS.md §6).

Stage 1 — :class:`ALLMRecStage1`, :func:`train_stage1`
    Item encoder ``d_cf(50) → 128`` and text encoder ``d_text(384) → 128`` (each Linear + Sigmoid)
    with linear decoders back. For the *last* item of each training sequence (positive) and one
    random unseen item (negative)::

        L = L_match + α·L_item-recon + β·L_text-recon + L_rec
        L_match       = MSE(enc_item(e_pos), enc_text(t_pos)) + (same for the negative)
        L_item-recon  = MSE(dec_item(enc_item(e)), e)        (pos + neg)
        L_text-recon  = MSE(dec_text(enc_text(t)), t)        (pos + neg)
        L_rec         = BCE(mean(u ⊙ dec_item(enc_item(e_pos))), 1) + BCE(… e_neg …, 0)

    ``u`` is SASRec's user vector (last position), ``e`` SASRec item rows (gathered forward-only,
    SASRec frozen), ``t`` sentence embeddings of the item texts. The paper fine-tunes SBERT in stage
    1; here the sentence encoder is **frozen by default** (embeddings precomputed once — the CPU
    cost of fine-tuning MiniLM on every step is ~100× the rest of stage 1: measured 10.8 s vs 0.10 s per batch of 32 on 2 busy cores); pass
    ``finetune_text_encoder=True`` with a SentenceTransformer to fine-tune it as the paper does.

Stage 2 — :class:`ALLMRecStage2`, :func:`train_stage2`
    User projector ``50 → d_llm`` and item projector ``128 → d_llm`` (2-layer MLPs). The prompt
    (:class:`PromptTemplate`) is built as segments: text is tokenised and embedded with the frozen
    LLM's token table; each ``[HistoryEmb]`` / ``[CandidateEmb]`` placeholder becomes the
    projected item latent of that item, and the projected user vector is the first input
    embedding (``<U>``). Loss: LM cross-entropy on the target answer tokens (``"<title>"`` + EOS)
    only. The LLM is frozen (``requires_grad_(False)``); only the projectors train.

Inference — :meth:`ALLMRecStage2.generate` (greedy; a hit when the target title is a substring of
the quoted answer) and :meth:`ALLMRecStage2.score_candidates` (sum of candidate-answer token
log-likelihoods given the prompt, one prompt pass + a KV-cache expansion over the candidates).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .datasets import Split
from .sasrec import SASRec, pad_left, sample_negatives

__all__ = ["ALLMRecStage1", "train_stage1", "PromptTemplate", "Example", "make_examples",
           "PromptLM", "PromptRecommender", "ALLMRecStage2", "TextLatentRecommender", "train_stage2", "evaluate_llm_recommender", "HISTORY", "CANDIDATE", "USER"]

USER = "[UserRep]"
HISTORY = "[HistoryEmb]"
CANDIDATE = "[CandidateEmb]"


# --------------------------------------------------------------------------------------------------
# Stage 1
# --------------------------------------------------------------------------------------------------


class _EncDec(nn.Module):
    """Linear + Sigmoid encoder to ``latent``, linear decoder back (A-LLMRec's ``two_layer_mlp``)."""

    def __init__(self, dim: int, latent: int):
        super().__init__()
        self.enc = nn.Linear(dim, latent)
        self.dec = nn.Linear(latent, dim)

    def forward(self, x):
        z = torch.sigmoid(self.enc(x))
        return z, self.dec(z)


class ALLMRecStage1(nn.Module):
    """Item–text alignment on top of a frozen SASRec.

    Parameters
    ----------
    sasrec : trained SASRec (frozen here: ``requires_grad_(False)`` and eval mode).
    text_dim : sentence-embedding width (384 for all-MiniLM-L6-v2).
    latent : joint latent width (128).
    alpha, beta : weights of the item / text reconstruction losses (paper: 0.5, 0.5 Movies/Games;
        0.5, 0.2 Beauty/Toys).
    """

    def __init__(self, sasrec: SASRec, text_dim: int = 384, latent: int = 128, alpha: float = 0.5,
                 beta: float = 0.5):
        super().__init__()
        self.sasrec = sasrec
        sasrec.requires_grad_(False)
        sasrec.eval()
        self.item = _EncDec(sasrec.config.hidden, latent)
        self.text = _EncDec(text_dim, latent)
        self.alpha, self.beta = alpha, beta
        self.latent = latent

    def train(self, mode: bool = True):
        super().train(mode)
        self.sasrec.eval()  # frozen backbone: no dropout
        return self

    def trainable_parameters(self):
        return list(self.item.parameters()) + list(self.text.parameters())

    def losses(self, user_vec, pos_e, neg_e, pos_t, neg_t) -> dict:
        zp, rp = self.item(pos_e)
        zn, rn = self.item(neg_e)
        wp, tp = self.text(pos_t)
        wn, tn = self.text(neg_t)
        pos_logit = (user_vec * rp).mean(-1)
        neg_logit = (user_vec * rn).mean(-1)
        rec = (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
               + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))
        match = F.mse_loss(zp, wp) + F.mse_loss(zn, wn)
        item_recon = F.mse_loss(rp, pos_e) + F.mse_loss(rn, neg_e)
        text_recon = F.mse_loss(tp, pos_t.detach()) + F.mse_loss(tn, neg_t.detach())
        total = match + self.alpha * item_recon + self.beta * text_recon + rec
        return {"loss": total, "match": match, "item_recon": item_recon, "text_recon": text_recon, "rec": rec}

    @torch.no_grad()
    def item_latent(self, ids: torch.Tensor) -> torch.Tensor:
        """The item encoder's latent (the vectors stage 2 projects) for item ids of any shape."""
        return torch.sigmoid(self.item.enc(self.sasrec.embed_items(ids)))


class _TextSource:
    """Item-text embeddings: a precomputed table (frozen encoder) or a trainable SentenceTransformer."""

    def __init__(self, table: torch.Tensor | None, encoder=None, texts: Sequence[str] | None = None):
        self.table, self.encoder, self.texts = table, encoder, texts

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            return self.table[ids]
        prep = getattr(self.encoder, "preprocess", None) or self.encoder.tokenize
        feats = prep([self.texts[i] for i in ids.tolist()])
        return self.encoder(feats)["sentence_embedding"]


def _stage1_batch(split: Split, users: np.ndarray, max_len: int, rng):
    seqs, pos, excl = [], [], []
    for u in users:
        tr = split.train[u]
        seqs.append(tr[:-1])
        pos.append(tr[-1])
        excl.append(split.full_sequence(u))
    neg = sample_negatives((len(users), 1), split.dataset.num_items, excl, rng)[:, 0]
    return pad_left(seqs, max_len), torch.as_tensor(np.array(pos)), torch.from_numpy(neg)


def train_stage1(stage1: ALLMRecStage1, split: Split, text_embeddings: torch.Tensor | None = None,
                 text_encoder=None, finetune_text_encoder: bool = False, epochs: int = 10,
                 batch_size: int = 32, lr: float = 1e-4, seed: int = 0, max_steps: int | None = None,
                 progress: bool = False) -> dict:
    """Train stage 1 (Adam, lr 1e-4, batch 32, 10 epochs in the paper).

    ``text_embeddings``: ``[num_items + 1, text_dim]`` precomputed sentence embeddings (frozen
    encoder, the default). With ``finetune_text_encoder=True``, ``text_encoder`` (a
    SentenceTransformer) is run on the item texts every step and trained too.
    Returns ``{"loss": [...], "parts": {name: [...]}, "seconds", "steps"}``.
    """
    if finetune_text_encoder:
        if text_encoder is None:
            raise ValueError("finetune_text_encoder=True needs text_encoder")
        source = _TextSource(None, text_encoder, split.dataset.texts)
        params = stage1.trainable_parameters() + list(text_encoder.parameters())
        text_encoder.train()
    else:
        if text_embeddings is None:
            raise ValueError("pass text_embeddings (precomputed) or finetune_text_encoder=True with text_encoder")
        if text_embeddings.shape[0] != split.dataset.num_items + 1:
            raise ValueError(f"text_embeddings has {text_embeddings.shape[0]} rows, expected num_items + 1 = "
                             f"{split.dataset.num_items + 1}")
        source = _TextSource(text_embeddings.float(), None)
        params = stage1.trainable_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    users = np.array([u for u in range(len(split)) if len(split.train[u]) >= 2], dtype=np.int64)
    hist: dict = {"loss": [], "parts": {k: [] for k in ("match", "item_recon", "text_recon", "rec")}}
    stage1.train()
    t0 = time.perf_counter()
    step = 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=epochs * math.ceil(len(users) / batch_size), desc="A-LLMRec stage 1", unit="batch")
    done = False
    for _ in range(epochs):
        order = rng.permutation(users)
        for b0 in range(0, len(order), batch_size):
            seq, pos, neg = _stage1_batch(split, order[b0:b0 + batch_size], stage1.sasrec.config.max_len, rng)
            with torch.no_grad():
                u = stage1.sasrec.user_representation(seq)
                pe = stage1.sasrec.embed_items(pos)
                ne = stage1.sasrec.embed_items(neg)
            parts = stage1.losses(u, pe, ne, source(pos), source(neg))
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            opt.step()
            hist["loss"].append(float(parts["loss"].detach()))
            for k in hist["parts"]:
                hist["parts"][k].append(float(parts[k].detach()))
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{hist['loss'][-1]:.4f}")
            if max_steps is not None and step >= max_steps:
                done = True
                break
        if done:
            break
    if bar is not None:
        bar.close()
    stage1.eval()
    hist["steps"] = step
    hist["seconds"] = time.perf_counter() - t0
    return hist


# --------------------------------------------------------------------------------------------------
# Prompts and examples
# --------------------------------------------------------------------------------------------------


@dataclass
class PromptTemplate:
    """A-LLMRec's prompt. ``with_embeddings=False`` drops the user token and the placeholders
    (the text-only prompt of the TALLRec-like baseline and of the zero-shot LLM)."""

    noun: str = "movie"
    watched: str = "watched"
    watch: str = "watch"
    with_embeddings: bool = True

    @classmethod
    def for_domain(cls, domain: str, with_embeddings: bool = True) -> "PromptTemplate":
        if domain in ("games", "game"):
            return cls("game", "played", "play", with_embeddings)
        if domain in ("items", "item", "product", "scientific"):
            return cls("item", "bought", "buy", with_embeddings)
        return cls("movie", "watched", "watch", with_embeddings)

    def segments(self, history: Sequence[str], candidates: Sequence[str]) -> list:
        """The prompt as a list of ``str`` and placeholder markers (:data:`USER`, :data:`HISTORY`,
        :data:`CANDIDATE`), in order."""
        e = self.with_embeddings
        out: list = []
        if e:
            out += [USER, " is a user representation."]
        out.append(f"This user has {self.watched} ")
        for k, t in enumerate(history):
            out.append(("," if k else "") + f'"{t}"')
            if e:
                out.append(HISTORY)
        out.append(f" in the previous. Recommend one next {self.noun} for this user to {self.watch} next "
                   f"from the following {self.noun} title set, ")
        for k, t in enumerate(candidates):
            out.append(("," if k else "") + f'"{t}"')
            if e:
                out.append(CANDIDATE)
        out.append(". The recommendation is ")
        return out

    def text(self, history: Sequence[str], candidates: Sequence[str]) -> str:
        """The prompt as one string, placeholders written out (for display and debugging)."""
        return "".join(self.segments(history, candidates)).replace(USER, "<U>")


@dataclass
class Example:
    """One recommendation query: SASRec input sequence, ≤10 history items, shuffled candidates."""

    seq: np.ndarray            # SASRec input (the user's history for this stage)
    history: np.ndarray        # the last ≤ max_history items of seq
    candidates: np.ndarray     # shuffled, contains target
    target: int

    @property
    def target_index(self) -> int:
        return int(np.flatnonzero(self.candidates == self.target)[0])


def make_examples(split: Split, stage: str, candidates: np.ndarray | None = None,
                  users: Sequence[int] | None = None, max_history: int = 10, num_negatives: int = 19,
                  seed: int = 0) -> list[Example]:
    """Examples for ``stage`` in ``{"train", "valid", "test"}``.

    ``train``: input ``s[:-3]``, target ``s[-3]`` (the last training item). ``valid`` / ``test``:
    the leave-one-out targets. ``candidates`` (rows aligned with ``users``, column 0 = target,
    e.g. from :func:`~pimcast.models.datasets.sample_candidates`) are shuffled with ``seed`` so
    the target's position is random; without them, 1 + ``num_negatives`` are drawn here.
    """
    from .datasets import sample_candidates

    users = list(range(len(split))) if users is None else list(users)
    rng = np.random.default_rng(seed)
    if stage == "train":
        users = [u for u in users if len(split.train[u]) >= 2]
    if candidates is None:
        if stage == "train":
            excl = [split.full_sequence(u) for u in users]
            neg = sample_negatives((len(users), num_negatives), split.dataset.num_items, excl, rng) if users else \
                np.zeros((0, num_negatives), dtype=np.int64)
            # distinct negatives per row
            for r in range(len(users)):
                while len(set(neg[r].tolist())) < num_negatives:
                    neg[r] = sample_negatives((1, num_negatives), split.dataset.num_items, [excl[r]], rng)[0]
            tgt = np.array([split.train[u][-1] for u in users], dtype=np.int64)
            candidates = np.concatenate([tgt[:, None], neg], axis=1) if users else np.zeros((0, 1 + num_negatives), np.int64)
        else:
            candidates = sample_candidates(split, stage, num_negatives=num_negatives, seed=seed, users=users)
    if len(candidates) != len(users):
        raise ValueError(f"{len(users)} users but {len(candidates)} candidate rows")
    out = []
    for u, cand in zip(users, candidates):
        if stage == "train":
            seq = split.train[u][:-1]
        else:
            seq = split.history(u, stage)
        c = np.array(cand, dtype=np.int64)
        rng.shuffle(c)
        out.append(Example(seq=seq, history=seq[-max_history:], candidates=c, target=int(cand[0])))
    return out


# --------------------------------------------------------------------------------------------------
# A causal LM driven by segment prompts (shared by A-LLMRec stage 2 and the TALLRec-like baseline)
# --------------------------------------------------------------------------------------------------


class PromptLM(nn.Module):
    """Builds ``inputs_embeds`` from segment prompts and runs a causal LM on them.

    Sequences are **left**-padded (so generation continues every row at the same position);
    ``position_ids`` count from the first real token.
    """

    def __init__(self, llm, tokenizer, answer_eos: bool = True):
        super().__init__()
        self.llm = llm
        self.tokenizer = tokenizer
        self.answer_eos = answer_eos
        self._tok_cache: dict[str, list[int]] = {}

    @property
    def d_llm(self) -> int:
        return self.llm.get_input_embeddings().weight.shape[1]

    @property
    def device(self) -> torch.device:
        """Where the LLM's token table lives (prompts and answers are built there)."""
        return self.llm.get_input_embeddings().weight.device

    def token_rms(self) -> float:
        """Root mean square of the LLM's token-embedding table (the scale projected vectors start at)."""
        with torch.no_grad():
            return float(self.llm.get_input_embeddings().weight.float().pow(2).mean().sqrt())

    def ids(self, text: str) -> list[int]:
        v = self._tok_cache.get(text)
        if v is None:
            v = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(self._tok_cache) < 200_000:
                self._tok_cache[text] = v
        return v

    def answer_ids(self, title: str) -> list[int]:
        ids = self.ids(f'"{title}"')
        if self.answer_eos and self.tokenizer.eos_token_id is not None:
            ids = ids + [self.tokenizer.eos_token_id]
        return ids

    def embed_segments(self, segments: list, vectors: dict) -> torch.Tensor:
        """``[T, d_llm]`` for one prompt; ``vectors[marker]`` is a ``[k, d_llm]`` tensor consumed in
        order for each occurrence of ``marker``."""
        table = self.llm.get_input_embeddings()
        used = {k: 0 for k in vectors}
        parts = []
        for s in segments:
            if s in (USER, HISTORY, CANDIDATE):
                v = vectors[s]
                parts.append(v[used[s]:used[s] + 1])
                used[s] += 1
            else:
                ids = self.ids(s)
                if ids:
                    parts.append(table(torch.tensor(ids, dtype=torch.long, device=self.device)))
        return torch.cat(parts, 0)

    def _stack(self, rows: list[torch.Tensor], labels: list[torch.Tensor] | None = None):
        T = max(r.shape[0] for r in rows)
        d = rows[0].shape[1]
        B = len(rows)
        dev = rows[0].device
        emb = rows[0].new_zeros((B, T, d))
        mask = torch.zeros((B, T), dtype=torch.long, device=dev)
        lab = torch.full((B, T), -100, dtype=torch.long, device=dev) if labels is not None else None
        for b, r in enumerate(rows):
            emb[b, T - r.shape[0]:] = r
            mask[b, T - r.shape[0]:] = 1
            if lab is not None:
                lab[b, T - r.shape[0]:] = labels[b]
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        return emb, mask, pos, lab

    def lm_loss(self, prompts: list[torch.Tensor], answers: list[list[int]]) -> torch.Tensor:
        """Mean cross-entropy over the answer tokens of each ``prompt + answer`` row."""
        table = self.llm.get_input_embeddings()
        rows, labels = [], []
        for p, a in zip(prompts, answers):
            a_t = torch.tensor(a, dtype=torch.long, device=p.device)
            rows.append(torch.cat([p, table(a_t)], 0))
            labels.append(torch.cat([torch.full((p.shape[0],), -100, dtype=torch.long, device=p.device), a_t]))
        emb, mask, pos, lab = self._stack(rows, labels)
        logits = self.llm(inputs_embeds=emb, attention_mask=mask, position_ids=pos).logits
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), lab[:, 1:].reshape(-1),
                               ignore_index=-100)

    @torch.no_grad()
    def generate(self, prompts: list[torch.Tensor], max_new_tokens: int = 32) -> list[str]:
        """Greedy continuation of each prompt, decoded (special tokens skipped)."""
        emb, mask, pos, _ = self._stack(prompts)
        out = self.llm.generate(inputs_embeds=emb, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, num_beams=1, pad_token_id=self.tokenizer.pad_token_id,
                                eos_token_id=self.tokenizer.eos_token_id)
        return self.tokenizer.batch_decode(out, skip_special_tokens=True)

    @torch.no_grad()
    def candidate_loglik(self, prompt: torch.Tensor, answers: list[list[int]], normalize: bool = False) -> torch.Tensor:
        """Log-likelihood of each answer given one prompt ``[T, d]`` → ``[len(answers)]``.

        One pass over the prompt, then its KV cache is repeated over the answers (falls back to
        full passes when the cache cannot be expanded). ``normalize``: mean per token, else sum.
        """
        C = len(answers)
        out = self.llm(inputs_embeds=prompt[None], use_cache=True)
        first = out.logits[0, -1].float().log_softmax(-1)
        L = max(len(a) for a in answers)
        ids = torch.full((C, L), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        amask = torch.zeros((C, L), dtype=torch.long)
        for c, a in enumerate(answers):
            ids[c, :len(a)] = torch.tensor(a)
            amask[c, :len(a)] = 1
        ids, amask = ids.to(prompt.device), amask.to(prompt.device)
        T = prompt.shape[0]
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        try:
            cache.batch_repeat_interleave(C)
            import inspect

            base = self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm
            kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
            logits = self.llm(input_ids=ids, **{kw: cache},
                              attention_mask=torch.cat([torch.ones((C, T), dtype=torch.long, device=amask.device),
                                                        amask], 1),
                              position_ids=torch.arange(T, T + L, device=amask.device).expand(C, L)).logits
        except (AttributeError, TypeError):
            table = self.llm.get_input_embeddings()
            emb = torch.cat([prompt[None].expand(C, -1, -1), table(ids)], 1)
            logits = self.llm(inputs_embeds=emb).logits[:, T:]
        logp = logits[:, :-1].float().log_softmax(-1)
        tok_lp = torch.cat([first[ids[:, 0]][:, None], logp.gather(-1, ids[:, 1:, None])[..., 0]], 1)
        tok_lp = tok_lp * amask
        s = tok_lp.sum(1)
        return (s / amask.sum(1) if normalize else s).cpu()


class PromptRecommender(nn.Module):
    """What A-LLMRec stage 2 and the TALLRec-like baseline share: an :class:`Example` becomes the
    template's prompt over the item titles (the one prompt builder), then LM loss on the target
    answer, greedy generation, or candidate scoring through :class:`PromptLM`.

    Subclasses set ``self.lm`` (:class:`PromptLM`), ``self.titles`` and ``self.template`` and
    override :meth:`placeholder_vectors` when the template has embedding placeholders.
    """

    lm: PromptLM
    titles: list
    template: PromptTemplate

    def placeholder_vectors(self, examples: Sequence[Example]) -> list[dict]:
        """Per example, ``{marker: [k, d_llm] tensor}`` for the template's placeholders (none here)."""
        return [{} for _ in examples]

    def prompts(self, examples: Sequence[Example]) -> list[torch.Tensor]:
        """Per-example prompt embeddings ``[T_i, d_llm]`` (on the LLM's device)."""
        out = []
        for e, vec in zip(examples, self.placeholder_vectors(examples)):
            segs = self.template.segments([self.titles[i] for i in e.history],
                                          [self.titles[i] for i in e.candidates])
            out.append(self.lm.embed_segments(segs, vec))
        return out

    def answers(self, items) -> list[list[int]]:
        return [self.lm.answer_ids(self.titles[int(i)]) for i in items]

    def loss(self, examples: Sequence[Example]) -> torch.Tensor:
        """Mean LM cross-entropy over the target answers (``"<title>"`` + EOS) of ``examples``."""
        return self.lm.lm_loss(self.prompts(examples), self.answers([e.target for e in examples]))

    @torch.no_grad()
    def generate(self, examples: Sequence[Example], max_new_tokens: int = 32) -> list[str]:
        return self.lm.generate(self.prompts(examples), max_new_tokens)

    @torch.no_grad()
    def score_candidates(self, example: Example, normalize: bool = False) -> np.ndarray:
        """Log-likelihood of each candidate's answer, in ``example.candidates`` order (``normalize``:
        per answer token)."""
        p = self.prompts([example])[0]
        return self.lm.candidate_loglik(p, self.answers(example.candidates), normalize).numpy()


# --------------------------------------------------------------------------------------------------
# Stage 2
# --------------------------------------------------------------------------------------------------


def _projector(d_in: int, d: int, act: nn.Module, out_rms: float | None) -> nn.Sequential:
    """A-LLMRec's 2-layer projector ``Linear → LayerNorm → act → Linear``; with ``out_rms`` a final
    LayerNorm whose gain starts at ``out_rms`` (the LLM's token-embedding scale)."""
    layers = [nn.Linear(d_in, d), nn.LayerNorm(d), act, nn.Linear(d, d)]
    if out_rms is not None:
        ln = nn.LayerNorm(d)
        with torch.no_grad():
            ln.weight.fill_(out_rms)
        layers.append(ln)
    return nn.Sequential(*layers)


class ALLMRecStage2(PromptRecommender):
    """Projectors from the CF space into a frozen LLM's token space.

    Parameters
    ----------
    stage1 : trained :class:`ALLMRecStage1` (frozen; provides SASRec user vectors and item latents).
    llm, tokenizer : a causal LM (frozen here) and its tokenizer.
    titles : item titles indexed by item id.
    template : :class:`PromptTemplate` (movies by default).
    match_token_scale : end each projector with a LayerNorm whose gain starts at the RMS of the
        LLM's token table, so projected vectors enter the LLM at the scale of its word embeddings
        (SmolLM2: RMS 0.136; a plain ``Linear`` head starts ~4x larger). ``False``: the paper's
        plain 2-layer MLP.
    """

    def __init__(self, stage1: ALLMRecStage1, llm, tokenizer, titles: Sequence[str],
                 template: PromptTemplate | None = None, match_token_scale: bool = True):
        super().__init__()
        self.stage1 = stage1
        stage1.requires_grad_(False)
        stage1.eval()
        llm.requires_grad_(False)
        llm.eval()
        self.lm = PromptLM(llm, tokenizer)
        self.titles = list(titles)
        self.template = template or PromptTemplate()
        d = self.lm.d_llm
        du = stage1.sasrec.config.hidden
        self.user_proj = _projector(du, d, nn.LeakyReLU(), self.lm.token_rms() if match_token_scale else None)
        self.item_proj = _projector(stage1.latent, d, nn.GELU(), self.lm.token_rms() if match_token_scale else None)

    def train(self, mode: bool = True):
        super().train(mode)
        self.stage1.eval()
        self.lm.llm.eval()
        return self

    def trainable_parameters(self):
        return list(self.user_proj.parameters()) + list(self.item_proj.parameters())

    def placeholder_vectors(self, examples: Sequence[Example]) -> list[dict]:
        """The projected user vector (``<U>``) and the projected item latents of each example's
        history and candidates. SASRec and stage 1 run where they live (the CPU for a PIM item
        table); their outputs move to the projectors' device."""
        sas = self.stage1.sasrec
        dev = next(self.user_proj.parameters()).device
        seq = pad_left([e.seq for e in examples], sas.config.max_len)
        with torch.no_grad():
            u = sas.user_representation(seq)
            items = [torch.as_tensor(np.concatenate([e.history, e.candidates]), dtype=torch.long) for e in examples]
            lat = self.stage1.item_latent(torch.cat(items)).to(dev)
        uvec = self.user_proj(u.to(dev))
        iv = self.item_proj(lat)
        out, k = [], 0
        for b, e in enumerate(examples):
            h, n = len(e.history), len(e.history) + len(e.candidates)
            out.append({USER: uvec[b:b + 1], HISTORY: iv[k:k + h], CANDIDATE: iv[k + h:k + n]})
            k += n
        return out


class TextLatentRecommender(PromptRecommender):
    """A-LLMRec's text-encoder variant for a domain SASRec never saw (cross-domain evaluation).

    Items are represented by the stage-1 **text** encoder's latent of their sentence embeddings
    (``sigmoid(text.enc(t))``, the space stage 1 aligns with the item latents) through the trained
    item projector; the user token is the user projector applied to SASRec's representation of an
    empty history (SASRec knows no item of the new domain, so it carries no user information).
    Shares ``stage2``'s LLM and projectors (nothing is copied or trained).
    """

    def __init__(self, stage2: ALLMRecStage2, titles: Sequence[str], text_embeddings: torch.Tensor,
                 template: PromptTemplate | None = None):
        super().__init__()
        if text_embeddings.shape[0] != len(titles):
            raise ValueError(f"text_embeddings has {text_embeddings.shape[0]} rows but there are {len(titles)} "
                             "titles (one row per item id, row 0 = padding)")
        self.stage2 = stage2
        self.lm = stage2.lm
        self.titles = list(titles)
        self.template = template or stage2.template
        with torch.no_grad():
            self.latents = torch.sigmoid(stage2.stage1.text.enc(text_embeddings.float()))
            sas = stage2.stage1.sasrec
            self.user_rep = sas.user_representation(torch.zeros((1, sas.config.max_len), dtype=torch.long))

    def placeholder_vectors(self, examples: Sequence[Example]) -> list[dict]:
        dev = next(self.stage2.user_proj.parameters()).device
        u = self.stage2.user_proj(self.user_rep.to(dev))
        out = []
        for e in examples:
            iv = self.stage2.item_proj(self.latents[torch.as_tensor(np.concatenate([e.history, e.candidates]))].to(dev))
            h = len(e.history)
            out.append({USER: u, HISTORY: iv[:h], CANDIDATE: iv[h:]})
        return out


def train_stage2(stage2: nn.Module, split: Split, epochs: int = 5, batch_size: int = 4, lr: float = 1e-4,
                 users: Sequence[int] | None = None, seed: int = 0, max_steps: int | None = None,
                 progress: bool = False, params=None, desc: str = "A-LLMRec stage 2",
                 max_history: int = 10, num_negatives: int = 19) -> dict:
    """Train a prompt model (``stage2.loss(examples)``) on training examples (target = last training
    item, ``num_negatives`` fresh random negatives each epoch, ≤ ``max_history`` history items). Adam over
    ``params`` (default: ``stage2.trainable_parameters()``); at most ``max_steps`` steps. Returns
    ``{"loss": [...], "seconds", "steps"}``."""
    params = list(params if params is not None else stage2.trainable_parameters())
    opt = torch.optim.Adam(params, lr=lr)
    hist: dict = {"loss": []}
    stage2.train()
    t0 = time.perf_counter()
    step = 0
    bar = None
    users = list(range(len(split))) if users is None else list(users)
    if progress:
        from tqdm import tqdm
        total = epochs * math.ceil(len(users) / batch_size)
        bar = tqdm(total=total if max_steps is None else min(total, max_steps), desc=desc, unit="batch")
    done = False
    for ep in range(epochs):
        exs = make_examples(split, "train", users=users, max_history=max_history, num_negatives=num_negatives,
                            seed=seed * 1000 + ep)
        order = np.random.default_rng(seed * 1000 + ep).permutation(len(exs))
        for b0 in range(0, len(order), batch_size):
            batch = [exs[k] for k in order[b0:b0 + batch_size]]
            loss = stage2.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            hist["loss"].append(float(loss.detach()))
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{hist['loss'][-1]:.4f}")
            if max_steps is not None and step >= max_steps:
                done = True
                break
        if done:
            break
    if bar is not None:
        bar.close()
    stage2.eval()
    hist["steps"] = step
    hist["seconds"] = time.perf_counter() - t0
    return hist


def evaluate_llm_recommender(model, examples: Sequence[Example], titles: Sequence[str],
                             generate: bool = True, likelihood: bool = True, batch_size: int = 4,
                             max_new_tokens: int = 32, progress: bool = False, normalize: bool = False,
                             desc: str = "LLM") -> dict:
    """Hit@1 of an LLM recommender (``ALLMRecStage2`` or ``TALLRec``) over ``examples``.

    ``generate``: greedy answers in batches of ``batch_size`` (left-padded), hit = target title ⊂
    quoted answer (``hit@1_generate``). ``likelihood``: candidate scoring by answer log-likelihood,
    one example at a time (one prompt pass + one pass over the 20 answers with the prompt's KV cache
    repeated), ties pessimistic (``hit@1_likelihood``, also ``hit@5/10``, ``ndcg@k``); ``normalize``
    scores by the mean per answer token instead of the sum. ``progress``: a tqdm bar per phase
    (stderr). Returns the metrics, the answers and the seconds of each phase.
    """
    from .evaluate import generation_hit, rank_metrics

    bar = _bar_factory(progress)
    out: dict = {"users": len(examples)}
    if generate:
        t = time.perf_counter()
        answers = []
        with bar(total=len(examples), desc=f"{desc} generate", unit="user") as pb:
            for b0 in range(0, len(examples), batch_size):
                batch = list(examples[b0:b0 + batch_size])
                answers += model.generate(batch, max_new_tokens)
                pb.update(len(batch))
        out["answers"] = answers
        hits = [generation_hit(a, titles[e.target]) for a, e in zip(answers, examples)]
        out["hit@1_generate"] = float(np.mean(hits)) if hits else 0.0
        out["seconds_generate"] = time.perf_counter() - t
    if likelihood:
        t = time.perf_counter()
        rows = []
        with bar(total=len(examples), desc=f"{desc} candidate scoring", unit="user") as pb:
            for e in examples:
                s = model.score_candidates(e, normalize=normalize)
                k = e.target_index
                rows.append(np.concatenate([[s[k]], np.delete(s, k)]))
                pb.update(1)
        m = rank_metrics(np.array(rows), ks=(1, 5, 10)) if rows else {}
        out.update({f"{k}_likelihood": v for k, v in m.items() if k.startswith(("hit", "ndcg"))})
        out["seconds_likelihood"] = time.perf_counter() - t
    return out


class _NoBar:
    def __init__(self, **_):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def update(self, n=1):
        pass


def _bar_factory(progress: bool):
    if not progress:
        return _NoBar
    import sys

    from tqdm import tqdm

    return lambda **kw: tqdm(file=sys.stderr, **kw)
