"""Dynamic sparse topology: magnitude pruning and growth (SET, cosine, CTRE-seq, CTRE-sim, RigL)."""

from .growth import (GROWTH_STRATEGIES, CosineGrowth, CTRESeqGrowth, CTRESimGrowth,
                     GrowthContext, GrowthStrategy, RandomGrowth, RigLGrowth, StaticGrowth,
                     get_growth, pattern_keys, sample_absent)
from .updater import GROW_INITS, TopologyUpdater

__all__ = ["GROWTH_STRATEGIES", "CosineGrowth", "CTRESeqGrowth", "CTRESimGrowth", "GrowthContext",
           "GrowthStrategy", "RandomGrowth", "RigLGrowth", "StaticGrowth", "get_growth",
           "pattern_keys", "sample_absent", "TopologyUpdater", "GROW_INITS"]
