"""Conditional generators: the contract, the affine reference, ACGAN, BigGAN and user factories."""

from intrinsic_robustness.generators.affine import AffineGenerator, make_affine
from intrinsic_robustness.generators.protocol import ConditionalGenerator, check_generator

__all__ = ["AffineGenerator", "ConditionalGenerator", "check_generator", "make_affine"]
