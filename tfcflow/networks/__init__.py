"""Networks that produce shift / log-scale parameters for couplings and injectors, summaries of
observations, and the learned residual base of the image models."""
from tfcflow.networks.condition_encoder import ConditionEncoder
from tfcflow.networks.conv import ConvNetwork
from tfcflow.networks.mlp import MLPNetwork
from tfcflow.networks.residual import ResidualNetwork
from tfcflow.networks.summary import DeepSet, TimeSeriesNetwork
from tfcflow.networks.upsampler import ResidualUpsampler

__all__ = ["ConditionEncoder", "ConvNetwork", "DeepSet", "MLPNetwork", "ResidualNetwork", "ResidualUpsampler",
           "TimeSeriesNetwork"]
