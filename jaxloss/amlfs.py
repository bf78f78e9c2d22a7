"""The AM-LFS search-space loss.

PLACEHOLDER: being written; every function raises NotImplementedError.
"""


def amlfs_loss(*args, **kwargs):
  raise NotImplementedError('amlfs_loss is not written yet')


def identity_theta(*args, **kwargs):
  raise NotImplementedError('identity_theta is not written yet')


def cosface_theta(*args, **kwargs):
  raise NotImplementedError('cosface_theta is not written yet')


def amlfs_transforms(*args, **kwargs):
  raise NotImplementedError('amlfs_transforms is not written yet')


def amlfs_curves(*args, **kwargs):
  raise NotImplementedError('amlfs_curves is not written yet')

