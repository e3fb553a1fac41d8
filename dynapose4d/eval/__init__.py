"""Benchmark evaluation: Consistent4D and Animate124 layouts, their scoring protocols, and the
learned metrics (LPIPS, CLIP, FVD) that are skipped with a reason when their weights are missing."""
