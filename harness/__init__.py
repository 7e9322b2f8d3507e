"""mibench: a robustness benchmarking harness for multimodal learning under missing and corrupted modalities."""

__version__ = "0.1.0"
