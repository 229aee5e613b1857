"""Sample data: realistic cross-border DTC stores from a seed, with the ground truth in `_truth/`.

from storepulse.sample_data import generate
generate(Path("landing"), scale="tiny", seed=7)
"""

from .generator import SCALES, GenerationSummary, generate
from .truth import load_truth, true_incremental_revenue

__all__ = ["SCALES", "GenerationSummary", "generate", "load_truth", "true_incremental_revenue"]
