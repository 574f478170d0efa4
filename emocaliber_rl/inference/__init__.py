"""One engine interface over vLLM and HF transformers, with token probabilities.

``from emocaliber_rl.inference import make_engine, GenerationRequest, SamplingConfig`` — see
``engine.py``; the backends by name in ``backends.py``; confidences (Verb / Ans / Avg) in
``probs.py``; resumable jsonl output in ``resumable.py``; ``eval run`` in ``eval_run.py``.
"""

from emocaliber_rl.inference.backends import BACKENDS, make_engine
from emocaliber_rl.inference.engine import (
    GREEDY,
    Engine,
    Generation,
    GenerationRequest,
    SamplingConfig,
    request_seed,
)
from emocaliber_rl.inference.probs import (
    answer_token_prob,
    confidences,
    mean_token_prob,
    verbalized_confidence,
)

__all__ = [
    "BACKENDS",
    "GREEDY",
    "Engine",
    "Generation",
    "GenerationRequest",
    "SamplingConfig",
    "answer_token_prob",
    "confidences",
    "make_engine",
    "mean_token_prob",
    "request_seed",
    "verbalized_confidence",
]
