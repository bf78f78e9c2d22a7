"""Binary cross-entropy on probabilities and on logits.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def binary_cross_entropy(*args, **kwargs):
  raise NotImplementedError('binary_cross_entropy is not written yet')


def binary_cross_entropy_with_logits(*args, **kwargs):
  raise NotImplementedError('binary_cross_entropy_with_logits is not written yet')

