"""Divergence and likelihood losses: KL divergence, Poisson and Gaussian NLL.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def kl_div(*args, **kwargs):
  raise NotImplementedError('kl_div is not written yet')


def poisson_nll_loss(*args, **kwargs):
  raise NotImplementedError('poisson_nll_loss is not written yet')


def gaussian_nll_loss(*args, **kwargs):
  raise NotImplementedError('gaussian_nll_loss is not written yet')

