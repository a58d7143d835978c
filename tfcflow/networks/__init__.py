"""Networks that produce shift / log-scale parameters for couplings and injectors."""
from tfcflow.networks.condition_encoder import ConditionEncoder
from tfcflow.networks.conv import ConvNetwork
from tfcflow.networks.mlp import MLPNetwork
from tfcflow.networks.summary import DeepSet, TimeSeriesNetwork

__all__ = ["ConditionEncoder", "ConvNetwork", "DeepSet", "MLPNetwork", "TimeSeriesNetwork"]
