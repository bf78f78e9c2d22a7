"""torch's margin (hinge-type) losses.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def soft_margin_loss(*args, **kwargs):
  raise NotImplementedError('soft_margin_loss is not written yet')


def multilabel_soft_margin_loss(*args, **kwargs):
  raise NotImplementedError('multilabel_soft_margin_loss is not written yet')


def multilabel_margin_loss(*args, **kwargs):
  raise NotImplementedError('multilabel_margin_loss is not written yet')


def multi_margin_loss(*args, **kwargs):
  raise NotImplementedError('multi_margin_loss is not written yet')


def margin_ranking_loss(*args, **kwargs):
  raise NotImplementedError('margin_ranking_loss is not written yet')


def hinge_embedding_loss(*args, **kwargs):
  raise NotImplementedError('hinge_embedding_loss is not written yet')

