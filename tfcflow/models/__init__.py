"""tfcflow models: Keras 3 models of p(x | condition)."""
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.caflow import CAFlow
from tfcflow.models.conditional_glow import ConditionalGlow, Conditioning
from tfcflow.models.conditional_realnvp import ConditionalRealNVP
from tfcflow.models.ensemble import FlowEnsemble
from tfcflow.models.image_flow import ImageFlowModel, Residual
from tfcflow.models.multiscale_flow import MultiScaleFlow
from tfcflow.models.relaxed_condition_flow import RelaxedConditionFlow
from tfcflow.models.vector_blocks import Coupling, Network

__all__ = ["CAFlow", "ConditionalFlowModel", "ConditionalGlow", "ConditionalRealNVP", "Conditioning", "Coupling",
           "FlowEnsemble", "ImageFlowModel", "MultiScaleFlow", "Network", "RelaxedConditionFlow", "Residual"]
