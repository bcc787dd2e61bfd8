"""Thin entry points (``python -m experiments.<name>``); the logic lives in `noisegroup`."""
