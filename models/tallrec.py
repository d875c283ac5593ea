"""A TALLRec-like baseline: LoRA fine-tuning of the same causal LLM on the text-only prompt.

As in the A-LLMRec paper's comparison, the prompt is A-LLMRec's candidate-selection prompt without
the user token and the ``[HistoryEmb]`` / ``[CandidateEmb]`` item vectors
(``PromptTemplate(with_embeddings=False)``); the answer is ``"<title>"`` + EOS and the loss is the
LM cross-entropy on the answer tokens. LoRA (``peft``; rank 8, α 16, dropout 0.05 on ``q_proj`` /
``v_proj`` by default) is the only trainable part. Prompt building, loss, generation and candidate
scoring are :class:`pimcast.models.allmrec.PromptRecommender`'s (shared with A-LLMRec stage 2).
Train with :func:`pimcast.models.allmrec.train_stage2` (it calls ``.loss(examples)`` and
``.trainable_parameters()``); evaluate with :func:`pimcast.models.allmrec.evaluate_llm_recommender`.

``peft`` injects the adapters into the given model object: pass an LLM instance that is not shared
with an A-LLMRec model (load it twice). ``lora=False`` gives the untrained LLM-only zero-shot
recommender on the same text prompt (nothing to train).
"""
from __future__ import annotations

from typing import Sequence

from .allmrec import PromptLM, PromptRecommender, PromptTemplate

__all__ = ["TALLRec"]


class TALLRec(PromptRecommender):
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
