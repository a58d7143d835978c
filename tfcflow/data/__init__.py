"""Data: synthetic problems and TFDS task pipelines."""
from tfcflow.data import gaussian_mixture

__all__ = ["gaussian_mixture"]
