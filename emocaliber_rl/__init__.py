"""emocaliber-rl: the EmoCaliber three-stage recipe (structured-CoT SFT, confidence SFT, GRPO
calibration) for vision-language models, on veRL, Ray and vLLM."""

__version__ = "0.1.0"
