"""The torch-free runtime: front ends, sampler and the engine sequencer. Never imports torch."""

__version__ = "0.1.0"
