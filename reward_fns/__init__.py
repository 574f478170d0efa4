"""Reward functions loadable by path from any veRL project (standard library only)."""
