"""Benchmarks, the leaderboard and the experiments of SearchQA (not installed: run from the repo)."""
