"""Dynamic sparse topology: magnitude pruning and growth (SET, cosine, CTRE-seq, CTRE-sim)."""

from .growth import (GROWTH_STRATEGIES, CosineGrowth, CTRESeqGrowth, CTRESimGrowth,
                     GrowthContext, GrowthStrategy, RandomGrowth, StaticGrowth, get_growth,
                     pattern_keys, sample_absent)
from .updater import TopologyUpdater

__all__ = ["GROWTH_STRATEGIES", "CosineGrowth", "CTRESeqGrowth", "CTRESimGrowth", "GrowthContext",
           "GrowthStrategy", "RandomGrowth", "StaticGrowth", "get_growth", "pattern_keys",
           "sample_absent", "TopologyUpdater"]
