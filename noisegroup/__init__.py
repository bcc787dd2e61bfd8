"""noisegroup: unsupervised perceptual grouping and object segmentation in JAX/Flax."""

from noisegroup import malloc as _malloc

__version__ = "0.1.0"

# Before JAX starts its CPU threads: XLA:CPU then reuses its per-step buffers (noisegroup/malloc.py says why).
MALLOC_TUNED = _malloc.reuse_freed_memory()
