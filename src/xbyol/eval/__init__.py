"""Evaluation: features, linear probe, kNN, collapse monitors and registered extra evaluators."""
