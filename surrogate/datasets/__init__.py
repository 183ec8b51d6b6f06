"""Loaders for public latency (and accuracy) benchmarks, read where the user keeps them.

Each loader takes the path from the caller (default ``$MNAS_BENCHMARKS_DIR`` or
``../shared/benchmarks`` beside the checkout), never copies the data, and returns a
:class:`LatencyDataset` whose ``license`` names the data's license:

- :func:`load_help_fbnet` / :func:`load_help_layout`: HELP FBNet latencies (MIT);
- :func:`load_anb`: Accel-NASBench throughput as ms per image (Apache-2.0);
- :func:`load_macro`: NAS-Bench-Macro CIFAR-10 accuracy (Apache-2.0);
- :func:`load_published_phones`: one DataFrame of the published phone latencies
  (``../shared/reference/published_latency.csv``: figures quoted from the papers and
  READMEs each row names, no data license) and the mobile-ml-benchmark's TFLite 2.10
  Pixel 4 / Galaxy S10 timings (MIT), each network mapped to the registry's
  architecture where it builds it.
"""
from .anb import anb_rows, load_anb
from .base import ENV_BENCHMARKS, LatencyDataset, benchmark_file, benchmarks_dir
from .help import load_help_fbnet, load_help_layout
from .macro import load_macro, macro_rows
from .phones import ENV_REFERENCE, load_published_phones, phones_coverage, reference_dir

__all__ = ["ENV_BENCHMARKS", "ENV_REFERENCE", "LatencyDataset", "anb_rows", "benchmark_file",
           "benchmarks_dir", "load_anb", "load_help_fbnet", "load_help_layout", "load_macro",
           "load_published_phones", "macro_rows", "phones_coverage", "reference_dir"]
