"""Multi-head softmax attention, in-context multi-task regression, gradient flow."""

__version__ = "0.1.0"
