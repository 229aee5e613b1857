"""`make bench`: per-stage time and peak memory, and ratios against peers (DESIGN §8)."""
