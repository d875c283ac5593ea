"""A TALLRec-like baseline: LoRA fine-tuning of the same causal LLM on the text-only prompt.

As in the A-LLMRec paper's comparison, the prompt is A-LLMRec's candidate-selection prompt without
the user token and the ``[HistoryEmb]`` / ``[CandidateEmb]`` item vectors
(``PromptTemplate(with_embeddings=False)``); the answer is ``"<title>"`` + EOS and the loss is the
LM cross-entropy on the answer tokens. LoRA (``peft``; rank 8, α 16, dropout 0.05 on ``q_proj`` /
``v_proj`` by default) is the only trainable part. Train with
:func:`pimcast.models.allmrec.train_stage2` (it calls ``.loss(examples)`` and
``.trainable_parameters()``); evaluate with
:func:`pimcast.models.allmrec.evaluate_llm_recommender`.

``peft`` injects the adapters into the given model object: pass an LLM instance that is not shared
with an A-LLMRec model (load it twice). ``lora=False`` gives the untrained LLM-only zero-shot
recommender on the same text prompt (nothing to train).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from .allmrec import Example, PromptLM, PromptTemplate

__all__ = ["TALLRec"]


class TALLRec(nn.Module):
    def __init__(self, llm, tokenizer, titles: Sequence[str], template: PromptTemplate | None = None,
                 r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.05,
                 target_modules: Sequence[str] = ("q_proj", "v_proj"), lora: bool = True):
        super().__init__()
        llm.requires_grad_(False)
        if lora:
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                             target_modules=list(target_modules), task_type="CAUSAL_LM", bias="none")
            self.peft_model = get_peft_model(llm, cfg)
        else:
            self.peft_model = llm.eval()
        self.lm = PromptLM(self.peft_model, tokenizer)
        self.titles = list(titles)
        t = template or PromptTemplate()
        self.template = PromptTemplate(t.noun, t.watched, t.watch, with_embeddings=False)

    def trainable_parameters(self):
        return [p for p in self.peft_model.parameters() if p.requires_grad]

    def prompts(self, examples: Sequence[Example]) -> list[torch.Tensor]:
        return [self.lm.embed_segments(self.template.segments([self.titles[i] for i in e.history],
                                                              [self.titles[i] for i in e.candidates]), {})
                for e in examples]

    def loss(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.lm.lm_loss(self.prompts(examples), [self.lm.answer_ids(self.titles[e.target]) for e in examples])

    @torch.no_grad()
    def generate(self, examples: Sequence[Example], max_new_tokens: int = 32) -> list[str]:
        return self.lm.generate(self.prompts(examples), max_new_tokens)

    @torch.no_grad()
    def score_candidates(self, example: Example, normalize: bool = False) -> np.ndarray:
        p = self.prompts([example])[0]
        return self.lm.candidate_loglik(p, [self.lm.answer_ids(self.titles[c]) for c in example.candidates],
                                        normalize).numpy()
