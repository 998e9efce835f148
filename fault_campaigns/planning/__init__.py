"""Stage 1, planning: the campaign configuration, the fault space and fault list, the tile mapping."""
