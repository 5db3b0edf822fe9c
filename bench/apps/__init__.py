"""WSGI applications served by the benchmark workloads (see ../run.py, WORKLOADS)."""
