"""Models built on minigrad: the Inception modules of GoogLeNet."""

from .inception import ConvReLU, Inception, InceptionNaive

__all__ = ["ConvReLU", "Inception", "InceptionNaive"]
