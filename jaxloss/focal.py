"""Focal losses.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def softmax_focal_loss(*args, **kwargs):
  raise NotImplementedError('softmax_focal_loss is not written yet')


def sigmoid_focal_loss(*args, **kwargs):
  raise NotImplementedError('sigmoid_focal_loss is not written yet')

