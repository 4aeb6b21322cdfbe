"""The ``headwater`` console script: operator commands over the flows, the warehouse and the health API.

The top layer beside ``devtools``: it may import every other package (see ``tests/test_meta.py``).
"""
