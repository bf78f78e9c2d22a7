"""Configurations of the CIFAR-10 AM-LFS example: a plain dataclass, one field per flag.

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

import flags  # examples/flags.py (examples/ is on the path, as for train.py)

#: The modes whose copies train fixed losses (no strategy flag applies to them).
FIXED_MODES = flags.CROSS_ENTROPY_MODES + flags.LOSS_GRID_MODES
# The example's modes (examples/flags.py, search_options, maps them to the library's strategy
# and selection); a grid and the other strategies: examples/amlfs_study.py.
MODES = ('amlfs', 'random') + FIXED_MODES
STRATEGIES = ('default', 'paper')

CONV_IMPLS = ('xla', 'patches')


def _field(default, help: str, **metadata):
  """A config field with its command-line help (``examples/flags.py`` builds the flags)."""
  return dataclasses.field(default=default, metadata={'help': help, **metadata})


@dataclasses.dataclass
class Config:
  """Every setting of one run. See the module docstring for where the defaults come from.

  Every field is a command-line flag of ``examples/amlfs_cifar10.py`` (``--num-intervals``,
  ``--policy-learning-rate``, ...), built from this class by ``examples/flags.py``.
  """

  # --- What to run -------------------------------------------------------------------------
  mode: str = _field('amlfs', "'amlfs': the search (REINFORCE on mu with Adam, best copy "
                     "broadcast every epoch); 'random': the same population and broadcast, mu "
                     "stays at mu_0 (random search around cross-entropy); 'baseline': one model "
                     "trained with softmax cross-entropy under the same recipe (1/B of a "
                     "search's compute). At a search's compute (B copies): 'baseline_best': B "
                     "independent cross-entropy models, the best on validation kept; 'losses': "
                     "B fixed losses (examples/loss_families.py: CE, label smoothing 0.1/0.2, "
                     "Poly-1, focal, GCE 0.7/0.4, SCE), the best copy broadcast every epoch; "
                     "'losses_indep': the same B losses trained independently, the best on "
                     "validation kept.",
                     choices=MODES)
  seed: int = _field(0, 'initialisation, sampled thetas, data order and augmentation.')

  # --- AM-LFS (paper section 3.4 and 4.2) ----------------------------------------------------
  population: int = _field(32, 'B, the number of copies (every mode but baseline).')
  num_intervals: int = _field(6, 'M; theta has 4 M numbers.')
  strategy: str = _field(
      'default', "'default': jaxloss.search.strategies.DEFAULT, the best configuration "
      "measured (docs/search_study.md: per-part sigma, whitened Adam steps, a mean copy, "
      "mirrored samples, rank fitness, a drift guard); 'paper': the paper's algorithm "
      "exactly (sigma 0.2 everywhere, Adam 0.05 on mu, z-scored rewards), for "
      "reproduction.", choices=STRATEGIES)
  sigma: float = _field(0.2, "--strategy paper: standard deviation of the sampling "
                        "Gaussian (fixed).")
  policy_learning_rate: float = _field(0.05, '--strategy paper: Adam learning rate on mu.')
  common_random_numbers: bool = _field(
      True, 'every copy sees the same batches and the same augmentation in an epoch, so the '
      'reward differences come from the losses; --no-common-random-numbers gives every copy its '
      'own data order and augmentation.')

  # --- Logit scale of the AM-LFS head ----------------------------------------------------------
  logit_scale: str | float = _field(
      'norms', "'norms': logits |W_j| |x| cos(theta_j) = W_j . x (paper eq. 4), so the identity "
      "theta is exactly softmax cross-entropy of a bias-free linear head; a float s: logits "
      "s cos(theta_j) of normalised features and weights (CosFace/ArcFace). s = 1 is nearly flat "
      "over 10 classes and stalls.")

  # --- ResNet and its optimiser (He et al. 2016) ---------------------------------------------
  depth: int = _field(20, 'ResNet depth, 6n + 2 (20, 32, 44, 56, 110).')
  width: int = _field(16, 'channels of the first stage (then 2x, 4x).')
  batch_size: int = _field(128, 'training batch size per copy.')
  learning_rate: float = _field(0.1, 'SGD learning rate before the drops.')
  momentum: float = _field(0.9, 'SGD momentum (not Nesterov).')
  weight_decay: float = _field(1e-4, 'L2 weight decay added to the gradient.')
  epochs: int = _field(182, '182 epochs of 351 steps = 64k iterations (He et al.).')
  lr_drop_fractions: tuple = _field((0.5, 0.75), 'learning-rate drops, as fractions of all '
                                    'steps.')
  lr_drop_factor: float = _field(0.1, 'factor of each learning-rate drop.')
  dtype: str = _field('auto', "compute dtype: 'auto' (bfloat16 on GPU/TPU, float32 on CPU), "
                      "'bfloat16', 'float32' or 'float64'; parameters are always float32.")
  conv_impl: str = _field(
      'xla', "3x3 convolutions as flax's nn.Conv ('xla'; under the population vmap a grouped "
      "convolution) or as image patches times one batched matmul per layer ('patches', "
      "models.PatchConv); same parameters, same function.", choices=CONV_IMPLS)
  scan_unroll: str | int | bool = _field(
      'auto', "unrolling of the epoch's lax.scan over steps: 'auto' (measured per conv_impl on "
      "a CPU, docs/cifar10.md: unrolled for 'xla' epochs of at most 32 steps, a loop for "
      "'patches'; a loop on accelerators), an int, true or false.")

  # --- Data ---------------------------------------------------------------------------------
  dataset: str = _field('cifar10', 'tfds dataset name (the tfds route only).')
  data_dir: str | None = _field(
      None, 'a folder holding cifar-10-batches-py/, cifar-10-python.tar.gz or '
      'cifar-10-binary.tar.gz (read with numpy), or a tfds data_dir with cifar10 prepared in '
      'array_record. Default: the tfds default data_dir, then ./data and ~/.keras/datasets.')
  num_train: int = _field(45000, 'training images, of the 50k (the rest: validation).')
  num_val: int = _field(5000, 'validation images (the reward).')
  num_test: int | None = _field(None, 'test images (none: the whole 10k test split).')
  split_seed: int = _field(0, 'fixes the train/validation split.')
  label_noise: float = _field(0.0, 'symmetric label noise ratio on the training split only, '
                              'e.g. 0.1 or 0.2.')
  noise_seed: int = _field(0, 'fixes which training labels are corrupted and to what.')
  eval_batch_size: int = _field(1000, 'batch size of validation and test evaluation.')

  # --- Output -------------------------------------------------------------------------------
  workdir: str = _field('runs/cifar10', 'where the run directories go.')
  keep_checkpoints: int = _field(2, 'checkpoints kept (one is written after every epoch).')

  def validate(self) -> Config:
    """``ValueError`` naming the flag of the first bad option (the CLI prints it in one line)."""
    if self.mode not in MODES:
      raise ValueError(f'mode must be one of {MODES}, got {self.mode!r}.')
    if self.strategy not in STRATEGIES:
      raise ValueError(f'strategy must be one of {STRATEGIES}, got {self.strategy!r}.')
    if (self.depth - 2) % 6:
      raise ValueError(f'depth must be 6n + 2 (20, 32, 44, 56, 110), got {self.depth}.')
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f"conv_impl must be 'xla' or 'patches', got {self.conv_impl!r}.")
    flags.check_numbers(
        self, positive_ints=('epochs', 'batch_size', 'eval_batch_size', 'population',
                             'num_intervals', 'width', 'keep_checkpoints', 'num_train',
                             'num_val', 'num_test'),
        positive=('sigma', 'policy_learning_rate', 'learning_rate', 'lr_drop_factor'),
        at_least_zero=('momentum', 'weight_decay'))
    if not 0.0 <= self.label_noise < 1.0:
      raise ValueError(f'--label-noise must be in [0, 1), got {self.label_noise}.')
    if self.depth < 8:
      raise ValueError(f'--depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got '
                       f'{self.depth}.')
    if any(not 0.0 < f < 1.0 for f in self.lr_drop_fractions):
      raise ValueError(f'--lr-drop-fractions must lie in (0, 1), got '
                       f'{" ".join(map(str, self.lr_drop_fractions))}.')
    if (isinstance(self.logit_scale, str) and self.logit_scale != 'norms') or (
        not isinstance(self.logit_scale, str) and not self.logit_scale > 0):
      raise ValueError(f"logit_scale must be 'norms' or a positive float, got "
                       f"{self.logit_scale!r}.")
    if self.dtype not in ('auto', 'bfloat16', 'float32', 'float64'):
      raise ValueError(f"dtype must be 'auto', 'bfloat16', 'float32' or 'float64', got "
                       f"{self.dtype!r}.")
    if not (self.scan_unroll == 'auto' or isinstance(self.scan_unroll, (bool, int))):
      raise ValueError(f"scan_unroll must be 'auto', an int or a bool, got "
                       f"{self.scan_unroll!r}.")
    if self.num_train < self.batch_size:
      raise ValueError(
          f'--num-train ({self.num_train}) must be at least --batch-size ({self.batch_size}).')
    if self.mode != 'baseline' and self.population < 2:
      raise ValueError(f'--mode {self.mode} needs --population of at least 2, got '
                       f'{self.population}.')
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
    paper = '-paper' if self.strategy == 'paper' and self.mode not in FIXED_MODES else ''
    name = f'{self.mode}{paper}-noise{int(round(100 * self.label_noise))}'
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
