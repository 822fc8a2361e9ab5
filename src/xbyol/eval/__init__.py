"""Evaluation: features, linear probe, kNN, collapse monitors and registered extra evaluators.

Importing the package registers the built-in evaluators in
:data:`xbyol.eval.evaluators.EVALUATORS`.
"""

from xbyol.eval import concept_eval, retrieval_eval  # noqa: F401 - registers the built-in evaluators
