"""tfcflow bijectors: ``tfp.bijectors.Bijector`` subclasses (stateless views) and the Keras layers
that own their variables.

Convention: ``forward`` is generative (latent -> data), ``inverse`` is normalizing (data -> latent).
"""
from tfcflow.bijectors.actnorm import ActNorm, ActNormLayer
from tfcflow.bijectors.affine_injector import AffineInjector, AffineInjectorLayer
from tfcflow.bijectors.box_support import BoxSupport
from tfcflow.bijectors.conditional_affine_coupling import AffineCouplingLayer, ConditionalAffineCoupling
from tfcflow.bijectors.conditional_spline_coupling import ConditionalSplineCoupling, SplineCouplingLayer
from tfcflow.bijectors.dequantize import UniformDequantization
from tfcflow.bijectors.flow_bijector import FlowBijector
from tfcflow.bijectors.flow_chain import FlowChain, FlowSequence
from tfcflow.bijectors.flow_layer import FlowLayer
from tfcflow.bijectors.fused_step import FusedStep
from tfcflow.bijectors.invertible_conv1x1 import InvertibleConv1x1, InvertibleConv1x1Layer, LUFactors
from tfcflow.bijectors.multiscale import MultiScale
from tfcflow.bijectors.permute import Permute, RandomPermutationLayer
from tfcflow.bijectors.split_prior import GaussianSplitPrior, SplitPriorLayer
from tfcflow.bijectors.squeeze import Squeeze, SqueezeLayer
from tfcflow.bijectors.standardize import StandardizeLayer

__all__ = [
    "ActNorm", "ActNormLayer", "AffineCouplingLayer", "AffineInjector", "AffineInjectorLayer", "BoxSupport",
    "ConditionalAffineCoupling", "ConditionalSplineCoupling", "FlowBijector", "FlowChain", "FlowLayer",
    "FlowSequence", "FusedStep", "GaussianSplitPrior", "InvertibleConv1x1", "InvertibleConv1x1Layer", "LUFactors",
    "MultiScale", "Permute", "RandomPermutationLayer", "SplineCouplingLayer", "SplitPriorLayer", "Squeeze",
    "SqueezeLayer", "StandardizeLayer", "UniformDequantization",
]
