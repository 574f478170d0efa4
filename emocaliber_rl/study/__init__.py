"""Ablation studies that run the real trainer (paper section 4.8)."""
