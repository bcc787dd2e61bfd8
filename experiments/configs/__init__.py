"""ml_collections configs: ``get_config(arg)`` with modes such as ``quick`` (tests), ``default``, ``paper``."""
