"""Latency predictors: table sums, learned models, differentiable latency, transfer."""
