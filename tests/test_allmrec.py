"""A-LLMRec stages 1-2, the TALLRec-like baseline and the evaluation rules, on tiny random models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pimcast.models import allmrec as A
from pimcast.models import datasets as D
from pimcast.models import evaluate as E
from pimcast.models import llm as L
from pimcast.models import sasrec as S


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    ds = D.generate_synthetic(num_users=80, num_items=80, num_clusters=6, max_length=20, seed=5)
    sp = ds.split()
    sas = S.SASRec(ds.num_items, S.SASRecConfig(hidden=16, max_len=20, dropout=0.0), seed=0)
    S.train_sasrec(sas, sp, epochs=1, batch_size=40)
    text = torch.randn(ds.num_items + 1, 24, generator=torch.Generator().manual_seed(0))
    return ds, sp, sas, text


@pytest.fixture(scope="module")
def tiny(world):
    ds = world[0]
    return L.tiny_llm(ds.titles[1:], hidden=32, layers=2, heads=2)


# ---- evaluation rules ------------------------------------------------------------------------------

def test_rank_metrics_and_ties():
    s = np.array([[3.0, 1, 2], [1.0, 2, 0], [1.0, 1, 1]])
    m = E.rank_metrics(s, ks=(1, 2))
    assert m["hit@1"] == pytest.approx(1 / 3)  # the all-tied row is a miss
    assert m["hit@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((1 + 1 / np.log2(3)) / 3)
    assert E.rank_metrics(np.random.default_rng(0).random((4000, 20)))["hit@1"] == pytest.approx(0.05, abs=0.012)
    with pytest.raises(ValueError):
        E.rank_metrics(np.zeros(3))


def test_generation_hit_rule():
    assert E.generation_hit('"Toy Story (1995)" is a great pick', "Toy Story (1995)")
    assert E.generation_hit('\u201cToy  Story (1995)\u201d', "Toy Story (1995)")
    assert not E.generation_hit('"GoldenEye (1995)", not "Toy Story (1995)"', "Toy Story (1995)")
    assert E.generation_hit("Toy Story (1995)", "Toy Story (1995)")  # no quotes: whole text
    assert E.generation_hit_rate(['"A"', '"B"'], ["A", "C"]) == 0.5


# ---- stage 1 ----------------------------------------------------------------------------------------

def test_stage1_shapes_losses_and_training(world):
    ds, sp, sas, text = world
    s1 = A.ALLMRecStage1(sas, text_dim=24, latent=12, alpha=0.5, beta=0.2)
    assert (s1.item.enc.in_features, s1.item.enc.out_features, s1.text.enc.in_features) == (16, 12, 24)
    assert not any(p.requires_grad for p in sas.parameters())
    u, pe, ne = torch.randn(3, 16), torch.randn(3, 16), torch.randn(3, 16)
    parts = s1.losses(u, pe, ne, text[[1, 2, 3]], text[[4, 5, 6]])
    want = parts["match"] + 0.5 * parts["item_recon"] + 0.2 * parts["text_recon"] + parts["rec"]
    assert torch.allclose(parts["loss"], want)
    table0 = sas.item_table()
    hist = A.train_stage1(s1, sp, text, epochs=8, batch_size=16, lr=3e-3)
    assert hist["steps"] == 8 * 5
    assert np.mean(hist["loss"][-5:]) < np.mean(hist["loss"][:5])
    assert torch.equal(sas.item_table(), table0)  # SASRec frozen
    z = s1.item_latent(torch.tensor([[1, 2], [3, 4]]))
    assert z.shape == (2, 2, 12) and (z > 0).all() and (z < 1).all()
    with pytest.raises(ValueError, match="rows"):
        A.train_stage1(s1, sp, text[:5], epochs=1)


# ---- prompts and stage 2 ----------------------------------------------------------------------------

def test_prompt_matches_paper():
    t = A.PromptTemplate()
    assert t.text(["T1", "T2"], ["C1", "C2"]) == (
        '<U> is a user representation.This user has watched "T1"[HistoryEmb],"T2"[HistoryEmb] in the '
        'previous. Recommend one next movie for this user to watch next from the following movie title '
        'set, "C1"[CandidateEmb],"C2"[CandidateEmb]. The recommendation is ')
    g = A.PromptTemplate.for_domain("games", with_embeddings=False)
    assert g.text(["T1"], ["C1"]) == ('This user has played "T1" in the previous. Recommend one next game '
                                      'for this user to play next from the following game title set, "C1". '
                                      'The recommendation is ')


def test_examples(world):
    ds, sp, _, _ = world
    cand = D.sample_candidates(sp, "test", seed=1, users=range(10))
    ex = A.make_examples(sp, "test", cand, users=range(10), seed=3)
    for u, e in enumerate(ex):
        assert e.target == sp.test_target[u] and sorted(e.candidates) == sorted(cand[u])
        assert len(e.history) == min(10, len(e.seq)) and np.array_equal(e.history, e.seq[-10:])
    assert len({e.target_index for e in ex}) > 1  # target position shuffled
    tr = A.make_examples(sp, "train", users=range(10), seed=0)
    for e, u in zip(tr, range(10)):
        assert e.target == sp.train[u][-1] and len(set(e.candidates.tolist())) == 20


@pytest.fixture(scope="module")
def stage2(world, tiny):
    ds, sp, sas, text = world
    s1 = A.ALLMRecStage1(sas, text_dim=24, latent=12)
    A.train_stage1(s1, sp, text, epochs=1, batch_size=40)
    llm, tok = tiny
    return A.ALLMRecStage2(s1, llm, tok, ds.titles)


def test_stage2_prompt_embeddings(world, stage2):
    ds, sp, _, _ = world
    e = A.make_examples(sp, "test", users=[0], seed=0)[0]
    p = stage2.prompts([e])[0]
    segs = stage2.template.segments([ds.titles[i] for i in e.history], [ds.titles[i] for i in e.candidates])
    n_text = sum(len(stage2.lm.ids(s)) for s in segs if s not in (A.USER, A.HISTORY, A.CANDIDATE))
    assert p.shape == (n_text + 1 + len(e.history) + 20, stage2.lm.d_llm)
    # the first row is the projected user vector
    with torch.no_grad():
        u = stage2.user_proj(stage2.stage1.sasrec.user_representation(S.pad_left([e.seq], 20)))
    assert torch.allclose(p[0], u[0])
    # the row after the first history title is that item's projected latent
    k = 1 + len(stage2.lm.ids(segs[1])) + len(stage2.lm.ids(segs[2])) + len(stage2.lm.ids(segs[3]))
    v = stage2.item_proj(stage2.stage1.item_latent(torch.tensor([int(e.history[0])])))
    assert torch.allclose(p[k], v[0])


def test_stage2_trains_projectors_only(world, stage2):
    ds, sp, _, _ = world
    llm_before = {k: v.clone() for k, v in stage2.lm.llm.state_dict().items()}
    proj_before = [p.clone() for p in stage2.trainable_parameters()]
    hist = A.train_stage2(stage2, sp, epochs=1, batch_size=4, lr=1e-2, users=range(8), max_steps=2)
    assert hist["steps"] == 2 and all(np.isfinite(hist["loss"]))
    assert all(torch.equal(v, stage2.lm.llm.state_dict()[k]) for k, v in llm_before.items())
    assert any(not torch.equal(a, b) for a, b in zip(proj_before, stage2.trainable_parameters()))
    # on a fixed small batch the loss falls (a random tiny LLM is nearly uniform: small but steady)
    ex = A.make_examples(sp, "train", users=range(2), seed=0)
    opt = torch.optim.Adam(stage2.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(4):
        loss = stage2.loss(ex)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stage2.trainable_parameters()
                   if p.dim() == 2)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_candidate_likelihood_matches_full_passes(world, stage2):
    ds, sp, _, _ = world
    e = A.make_examples(sp, "test", users=[1], seed=0)[0]
    p = stage2.prompts([e])[0].detach()
    ans = [stage2.lm.answer_ids(ds.titles[c]) for c in e.candidates[:5]]
    fast = stage2.lm.candidate_loglik(p, ans)
    llm = stage2.lm.llm
    T = p.shape[0]
    with torch.no_grad():
        for c, a in enumerate(ans):
            x = torch.cat([p, llm.get_input_embeddings()(torch.tensor(a))])[None]
            lp = llm(inputs_embeds=x).logits[0].log_softmax(-1)
            ref = sum(float(lp[T - 1 + k, t]) for k, t in enumerate(a))
            assert float(fast[c]) == pytest.approx(ref, abs=1e-3)


def test_evaluate_llm_recommender(world, stage2):
    ds, sp, _, _ = world
    ex = A.make_examples(sp, "test", users=range(3), seed=0)
    r = A.evaluate_llm_recommender(stage2, ex, ds.titles, max_new_tokens=4, batch_size=2)
    assert len(r["answers"]) == 3 and all(isinstance(a, str) for a in r["answers"])
    assert 0 <= r["hit@1_generate"] <= 1 and 0 <= r["hit@1_likelihood"] <= 1
    # and a left-padded batch generates the same as one-by-one
    one = [stage2.generate([x], max_new_tokens=4)[0] for x in ex]
    assert one == r["answers"]


def test_tallrec_lora_baseline(world):
    from pimcast.models.tallrec import TALLRec

    ds, sp, _, _ = world
    llm, tok = L.tiny_llm(ds.titles[1:], hidden=32, layers=2, heads=2, seed=1)
    base = {k: v.clone() for k, v in llm.state_dict().items()}
    tr = TALLRec(llm, tok, ds.titles, r=4)
    params = tr.trainable_parameters()
    assert params and all("lora" in n for n, p in tr.peft_model.named_parameters() if p.requires_grad)
    before = [p.clone() for p in params]
    hist = A.train_stage2(tr, sp, epochs=1, batch_size=2, lr=1e-2, users=range(4), max_steps=2, desc="TALLRec")
    assert hist["steps"] == 2 and all(np.isfinite(hist["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    sd = tr.peft_model.get_base_model().state_dict()
    for k, v in base.items():  # frozen base weights unchanged
        k2 = k.replace(".weight", ".base_layer.weight") if k not in sd else k
        assert torch.equal(v, sd[k2])
    ex = A.make_examples(sp, "test", users=range(2), seed=0)
    r = A.evaluate_llm_recommender(tr, ex, ds.titles, max_new_tokens=3)
    assert len(r["answers"]) == 2 and "hit@1_likelihood" in r
    assert "[HistoryEmb]" not in tr.template.text(["a"], ["b"])


def test_zero_shot_text_llm(world, tiny):
    from pimcast.models.tallrec import TALLRec

    ds, sp, _, _ = world
    llm, tok = tiny
    zs = TALLRec(llm, tok, ds.titles, lora=False)
    assert zs.trainable_parameters() == []
    ex = A.make_examples(sp, "test", users=range(2), seed=0)
    r = A.evaluate_llm_recommender(zs, ex, ds.titles, max_new_tokens=2)
    assert len(r["answers"]) == 2


def test_one_prompt_builder_for_allmrec_and_tallrec(world, stage2, tiny):
    """TALLRec's text prompt is A-LLMRec's with the user token and placeholders dropped, both built by
    PromptRecommender.prompts (token for token)."""
    from pimcast.models.tallrec import TALLRec

    ds, sp, _, _ = world
    assert isinstance(stage2, A.PromptRecommender)
    zs = TALLRec(tiny[0], tiny[1], ds.titles, lora=False)
    e = A.make_examples(sp, "test", users=[2], seed=0)[0]
    segs = stage2.template.segments([ds.titles[i] for i in e.history], [ds.titles[i] for i in e.candidates])
    text_only = [s for s in segs if s not in (A.USER, A.HISTORY, A.CANDIDATE) and s != " is a user representation."]
    ids = [t for s in text_only for t in zs.lm.ids(s)]
    p = zs.prompts([e])[0]
    table = zs.lm.llm.get_input_embeddings()
    assert torch.equal(p, table(torch.tensor(ids)))
    assert zs.answers([e.target]) == stage2.answers([e.target]) == [zs.lm.answer_ids(ds.titles[e.target])]


def test_projectors_start_at_the_token_scale(world, stage2):
    rms = stage2.lm.token_rms()
    e = A.make_examples(sp_ := world[1], "test", users=range(4), seed=0)
    fresh = A.ALLMRecStage2(stage2.stage1, stage2.lm.llm, stage2.lm.tokenizer, world[0].titles)
    v = fresh.placeholder_vectors(e)
    got = torch.cat([torch.cat([d[A.USER], d[A.HISTORY], d[A.CANDIDATE]]) for d in v])
    assert float(got.pow(2).mean().sqrt()) == pytest.approx(rms, rel=0.05)
    plain = A.ALLMRecStage2(stage2.stage1, stage2.lm.llm, stage2.lm.tokenizer, world[0].titles,
                            match_token_scale=False)
    assert len(plain.item_proj) == 4 and len(fresh.item_proj) == 5


def test_evaluation_progress_bars(world, stage2, capsys):
    ds, sp, _, _ = world
    ex = A.make_examples(sp, "test", users=range(3), seed=0)
    r = A.evaluate_llm_recommender(stage2, ex, ds.titles, max_new_tokens=2, batch_size=2, progress=True,
                                   desc="A-LLMRec")
    err = capsys.readouterr().err
    assert "A-LLMRec generate" in err and "A-LLMRec candidate scoring" in err and "3/3" in err
    quiet = A.evaluate_llm_recommender(stage2, ex, ds.titles, max_new_tokens=2, batch_size=2)
    assert capsys.readouterr().err == "" and quiet["answers"] == r["answers"]
    norm = A.evaluate_llm_recommender(stage2, ex, ds.titles, generate=False, normalize=True)
    assert "hit@1_likelihood" in norm and "answers" not in norm


def test_text_latent_recommender_cross_domain(world, stage2):
    ds, sp, _, text = world
    other = D.generate_synthetic(num_users=20, num_items=30, num_clusters=3, max_length=10, seed=9)
    osp = other.split()
    t2 = torch.randn(other.num_items + 1, text.shape[1], generator=torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="rows but there are"):
        A.TextLatentRecommender(stage2, other.titles, t2[:-1])
    x = A.TextLatentRecommender(stage2, other.titles, t2, A.PromptTemplate.for_domain("game"))
    ex = A.make_examples(osp, "test", users=range(3), seed=0)
    v = x.placeholder_vectors(ex)
    want = stage2.item_proj(torch.sigmoid(stage2.stage1.text.enc(t2[torch.as_tensor(ex[0].candidates)])))
    assert torch.allclose(v[0][A.CANDIDATE], want)
    assert "played" in x.template.text(["a"], ["b"])
    r = A.evaluate_llm_recommender(x, ex, other.titles, max_new_tokens=2)
    assert r["users"] == 3 and 0 <= r["hit@1_likelihood"] <= 1
