"""tfcflow models: Keras 3 models of p(x | condition)."""
from tfcflow.models.base import ConditionalFlowModel
from tfcflow.models.conditional_realnvp import ConditionalRealNVP
from tfcflow.models.relaxed_condition_flow import RelaxedConditionFlow

__all__ = ["ConditionalFlowModel", "ConditionalRealNVP", "RelaxedConditionFlow"]
