"""Embedding losses: cosine embedding and triplet margin losses.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def cosine_embedding_loss(*args, **kwargs):
  raise NotImplementedError('cosine_embedding_loss is not written yet')


def triplet_margin_loss(*args, **kwargs):
  raise NotImplementedError('triplet_margin_loss is not written yet')


def triplet_margin_with_distance_loss(*args, **kwargs):
  raise NotImplementedError('triplet_margin_with_distance_loss is not written yet')

