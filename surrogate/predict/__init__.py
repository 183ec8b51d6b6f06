"""Latency predictors: table sums, learned models, their differentiable and distilled forms, transfer."""
