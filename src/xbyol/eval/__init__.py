"""Evaluation: features, linear probe, kNN and registered extra evaluators."""
