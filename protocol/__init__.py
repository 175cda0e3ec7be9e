"""Every binary frame of the product, defined once with construct (CPython only)."""
