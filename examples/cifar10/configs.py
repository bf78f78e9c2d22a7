"""Configurations of the CIFAR-10 AM-LFS example: plain dataclasses, no extra dependency.

``default()`` is the paper's experiment (Li et al., ICCV 2019, table 2) on He et al.'s ResNet-20
recipe (CVPR 2016, section 4.2):

* AM-LFS: a population of ``B = 32`` copies, ``M = 6`` intervals (``theta`` has 24 numbers),
  ``theta ~ N(mu, 0.2^2 I)``, Adam with learning rate 0.05 on ``mu``, ``mu_0`` = identity
  (plain softmax cross-entropy).
* ResNet-20: SGD with momentum 0.9 (not Nesterov), learning rate 0.1, L2 weight decay 1e-4 on
  every parameter (added to the gradient, as in He et al.'s Caffe/Torch code), batch 128, a
  45k/5k train/validation split of the 50k training images, pad-4 random crop and horizontal
  flip.
* Length: He et al. stop at 64k iterations and divide the learning rate by 10 at 32k and 48k.
  At 45k training images and batch 128 an epoch is 351 steps (the last partial batch is
  dropped), so we train **182 epochs** (63,882 steps) and drop the learning rate at **50% and
  75% of the steps**: after step 31,941 (the end of epoch 91) and after step 47,912 (in epoch
  137). Because the drops are fractions of the run, ``--epochs 200`` keeps the same shape.

``smoke()`` is a tiny configuration for CI and a first try on a laptop CPU: 32x32 images (real
size) but only 64 training images (2 steps of 32 per epoch), 64 validation and 64 test images,
a width-4 ResNet-20, ``B = 2``, 2 epochs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

MODES = ('amlfs', 'random', 'baseline')


@dataclasses.dataclass
class Config:
  """Every setting of one run. See the module docstring for where the defaults come from."""

  # --- What to run -------------------------------------------------------------------------
  # 'amlfs': the search (REINFORCE on mu with Adam, best copy broadcast every epoch).
  # 'random': the same population and broadcast, but mu stays at mu_0 (random search around the
  #   identity loss; isolates what the REINFORCE update adds).
  # 'baseline': one model trained with plain softmax cross-entropy under the same recipe.
  mode: str = 'amlfs'
  seed: int = 0

  # --- AM-LFS (paper section 3.4 and 4.2) ----------------------------------------------------
  population: int = 32           # B
  num_intervals: int = 6         # M; theta has 4 * M numbers
  sigma: float = 0.2             # standard deviation of the sampling Gaussian (fixed)
  policy_learning_rate: float = 0.05   # Adam on mu
  # Common random numbers: every copy sees the same batches and the same augmentation in an
  # epoch, so the reward differences come from the losses. False gives every copy its own
  # augmentation key.
  common_random_numbers: bool = True

  # --- Logit scale of the AM-LFS head ----------------------------------------------------------
  # 'norms': logits are |W_j| |x| cos(theta_j) = W_j . x (paper eq. 4), so the identity theta is
  # exactly softmax cross-entropy of a bias-free linear head. A float s: logits s * cos(theta_j)
  # (normalised features and weights, as in CosFace/ArcFace). The unscaled cosine softmax
  # (s = 1) is nearly flat over 10 classes and stalls; do not use it.
  logit_scale: Union[str, float] = 'norms'

  # --- ResNet-20 and its optimiser (He et al. 2016) ------------------------------------------
  depth: int = 20                # 6n + 2 with n = 3
  width: int = 16                # channels of the first stage (16, 32, 64)
  batch_size: int = 128
  learning_rate: float = 0.1
  momentum: float = 0.9
  weight_decay: float = 1e-4
  epochs: int = 182
  lr_drop_fractions: tuple = (0.5, 0.75)   # of the total number of steps
  lr_drop_factor: float = 0.1
  # 'auto': bfloat16 compute with float32 parameters on GPU/TPU, float32 on CPU.
  dtype: str = 'auto'
  # How the 3x3 convolutions are computed (same parameters, same function): 'xla' is flax's
  # nn.Conv (under the population vmap, a grouped convolution with B groups); 'patches' gathers
  # image patches and does one batched matmul per layer (models.PatchConv). See bench/NOTES.md.
  conv_impl: str = 'xla'
  # Unrolling of the epoch's scan over steps. 'auto': the whole epoch on a CPU when it has at
  # most 32 steps (XLA:CPU runs convolution gradients several times slower inside a loop,
  # jax-ml/jax#12868), else a loop. An int or True/False is passed to lax.scan as is.
  scan_unroll: Union[str, int, bool] = 'auto'

  # --- Data ---------------------------------------------------------------------------------
  dataset: str = 'cifar10'
  data_dir: Optional[str] = None  # tfds data_dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)
  num_train: int = 45000          # of the 50k training images; the rest ...
  num_val: int = 5000             # ... are the validation split (the reward)
  num_test: Optional[int] = None  # None: the whole 10k test split
  split_seed: int = 0             # fixes the 45k/5k split
  label_noise: float = 0.0        # symmetric noise ratio on the training split only
  noise_seed: int = 0             # fixes which labels are corrupted and to what
  eval_batch_size: int = 1000

  # --- Output -------------------------------------------------------------------------------
  workdir: str = 'runs/cifar10'
  keep_checkpoints: int = 2       # a checkpoint is written after every epoch

  def validate(self) -> 'Config':
    if self.mode not in MODES:
      raise ValueError(f'mode must be one of {MODES}, got {self.mode!r}.')
    if (self.depth - 2) % 6:
      raise ValueError(f'depth must be 6n + 2 (20, 32, 44, 56, 110), got {self.depth}.')
    if self.conv_impl not in ('xla', 'patches'):
      raise ValueError(f"conv_impl must be 'xla' or 'patches', got {self.conv_impl!r}.")
    if not 0.0 <= self.label_noise < 1.0:
      raise ValueError(f'label_noise must be in [0, 1), got {self.label_noise}.')
    if isinstance(self.logit_scale, str) and self.logit_scale != 'norms':
      raise ValueError(f"logit_scale must be 'norms' or a float, got {self.logit_scale!r}.")
    if self.num_train < self.batch_size:
      raise ValueError(
          f'num_train ({self.num_train}) must be at least batch_size ({self.batch_size}).')
    if self.mode != 'baseline' and self.population < 2:
      raise ValueError(f'mode {self.mode!r} needs a population of at least 2.')
    return self

  @property
  def effective_population(self) -> int:
    """The baseline trains one model; the searches train ``population`` copies."""
    return 1 if self.mode == 'baseline' else self.population

  @property
  def steps_per_epoch(self) -> int:
    return self.num_train // self.batch_size

  @property
  def lr_boundaries(self) -> tuple:
    total = self.epochs * self.steps_per_epoch
    return tuple(int(round(f * total)) for f in self.lr_drop_fractions)

  @property
  def run_name(self) -> str:
    """Sub-directory of ``workdir`` for this run: all of table 2 fits in one working directory."""
    name = f'{self.mode}-noise{int(round(100 * self.label_noise))}'
    if self.seed:
      name += f'-seed{self.seed}'
    return name


def default(**overrides) -> Config:
  """The paper's experiment: AM-LFS, B=32, M=6, ResNet-20, He et al.'s recipe, 182 epochs."""
  return dataclasses.replace(Config(), **overrides).validate()


def smoke(**overrides) -> Config:
  """A tiny run of the same code path (CI, laptops): seconds per epoch on a CPU."""
  base = dict(
      population=2, width=4, epochs=2, batch_size=32, num_train=64, num_val=64, num_test=64,
      eval_batch_size=64, workdir='runs/cifar10_smoke')
  base.update(overrides)
  return dataclasses.replace(Config(), **base).validate()


def to_dict(config: Config) -> dict:
  return dataclasses.asdict(config)


def from_dict(values: dict) -> Config:
  fields = {f.name for f in dataclasses.fields(Config)}
  values = {k: v for k, v in values.items() if k in fields}
  if 'lr_drop_fractions' in values:
    values['lr_drop_fractions'] = tuple(values['lr_drop_fractions'])
  return Config(**values).validate()
