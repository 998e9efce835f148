"""Stage 4, analysis: summaries, rates with intervals and the campaign report."""
