"""Simulation-based inference estimators built on tfcflow's flows, with a TFP prior.

``NPE`` (neural posterior estimation): ``NPE(prior).fit(theta, x)``, ``sample(x_o)``,
``log_prob(theta, x_o)``, ``diagnose``, ``save`` / ``load``, ``export``. ``NLE`` (neural
likelihood estimation, sampled by MCMC; i.i.d. trials): the same shape. ``PriorSpace``: the
prior's flat parameter vector and support; ``prior_spec`` / ``prior_from_spec``: the prior as JSON.
"""
from tfcflow.inference.nle import NLE
from tfcflow.inference.npe import DEFAULT_CANDIDATES, DEFAULT_FLOW, NPE, Training
from tfcflow.inference.prior import PriorSpace, prior_from_spec, prior_spec

__all__ = ["DEFAULT_CANDIDATES", "DEFAULT_FLOW", "NLE", "NPE", "PriorSpace", "Training", "prior_from_spec",
           "prior_spec"]
