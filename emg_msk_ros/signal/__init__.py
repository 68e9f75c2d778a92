"""Streaming and offline EMG conditioning (numpy/scipy, causal, stateful)."""
