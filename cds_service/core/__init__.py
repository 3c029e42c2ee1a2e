"""What every stage shares: errors, the decision trace, log-safe references, wording helpers,
JSON read within limits, deadlines, and the hook request's model."""
