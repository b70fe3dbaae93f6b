"""Benchmarks of the hot paths against floors measured in the same run (`make bench`)."""
