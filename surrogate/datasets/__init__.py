"""Loaders for public latency (and accuracy) benchmarks, read where the user keeps them.

Each loader takes the path from the caller (default ``$MNAS_BENCHMARKS_DIR`` or
``../shared/benchmarks`` beside the checkout), never copies the data, and returns a
:class:`LatencyDataset` whose ``license`` names the data's license:

- :func:`load_help_fbnet` / :func:`load_help_layout`: HELP FBNet latencies (MIT);
- :func:`load_anb`: Accel-NASBench throughput as ms per image (Apache-2.0);
- :func:`load_macro`: NAS-Bench-Macro CIFAR-10 accuracy (Apache-2.0).
"""
from .anb import load_anb
from .base import ENV_BENCHMARKS, LatencyDataset, benchmark_file, benchmarks_dir
from .help import load_help_fbnet, load_help_layout
from .macro import load_macro

__all__ = ["ENV_BENCHMARKS", "LatencyDataset", "benchmark_file", "benchmarks_dir", "load_anb",
           "load_help_fbnet", "load_help_layout", "load_macro"]
