"""xbyol: self-supervised representation learning with BYOL that can explain what it learned."""

__version__ = "0.1.0"
