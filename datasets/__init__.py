"""noisegroup's datasets: NumPy-only generators and loaders (no JAX import).

Note: this top-level package shares its name with the Hugging Face ``datasets`` package. Run noisegroup from the
repository root (``python -m ...``, ``pytest``), which puts this directory first on ``sys.path``; see the README.
"""
