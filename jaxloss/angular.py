"""Margin-softmax losses on cosine logits: CosFace, ArcFace, SphereFace, L-Softmax.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def cosine_logits(*args, **kwargs):
  raise NotImplementedError('cosine_logits is not written yet')


def cosface(*args, **kwargs):
  raise NotImplementedError('cosface is not written yet')


def arcface(*args, **kwargs):
  raise NotImplementedError('arcface is not written yet')


def sphereface(*args, **kwargs):
  raise NotImplementedError('sphereface is not written yet')


def combined_margin(*args, **kwargs):
  raise NotImplementedError('combined_margin is not written yet')


def large_margin_softmax(*args, **kwargs):
  raise NotImplementedError('large_margin_softmax is not written yet')

