"""The PyTorch peer: one ResNet-20 trained the usual way, timed per CIFAR-10 epoch.

Eager PyTorch, bf16 autocast on CUDA, channels-last, SGD momentum 0.9, batch 128, random
crop + flip on the device, data resident on the device (synthetic CIFAR-shaped uint8
images, like bench/population.py). B copies trained one after another take B times this.

    python bench/torch_peer.py                  # GPU: 45,000 images, 3 timed epochs
    python bench/torch_peer.py --smoke          # CPU: 256 images, width 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
  """He et al.'s CIFAR block with option-A (zero-padding) shortcuts."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.stride, self.pad = stride, cout - cin

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
    if self.pad:
      shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
    return F.relu(out + shortcut)


class ResNet20(nn.Module):

  def __init__(self, width: int = 16, num_classes: int = 10):
    super().__init__()
    self.conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
    self.bn = nn.BatchNorm2d(width)
    blocks, cin = [], width
    for stage, cout in enumerate((width, 2 * width, 4 * width)):
      for i in range(3):
        blocks.append(BasicBlock(cin, cout, 2 if stage and not i else 1))
        cin = cout
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(cin, num_classes, bias=False)

  def forward(self, x):
    x = self.blocks(F.relu(self.bn(self.conv(x))))
    return self.fc(x.mean(dim=(2, 3)))


def augment(images: torch.Tensor) -> torch.Tensor:
  """Pad-4 random crop and horizontal flip of a uint8 NCHW batch, on its device."""
  n = images.shape[0]
  padded = F.pad(images, (4, 4, 4, 4))
  dx, dy = torch.randint(0, 9, (2, n), device=images.device)
  rows = (dy[:, None] + torch.arange(32, device=images.device))[:, None, :, None]
  cols = (dx[:, None] + torch.arange(32, device=images.device))[:, None, None, :]
  out = padded[torch.arange(n, device=images.device)[:, None, None, None],
               torch.arange(3, device=images.device)[None, :, None, None], rows, cols]
  flip = torch.rand(n, device=images.device) < 0.5
  return torch.where(flip[:, None, None, None], out.flip(3), out)


def time_epochs(num_train: int = 45000, batch_size: int = 128, width: int = 16,
                epochs: int = 3, device: str | None = None, seed: int = 0) -> dict:
  """Trains one ResNet-20 for ``epochs + 1`` epochs; returns the median epoch time."""
  device = device or ("cuda" if torch.cuda.is_available() else "cpu")
  torch.manual_seed(seed)
  cuda = device.startswith("cuda")
  model = ResNet20(width).to(device).to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  images = torch.randint(0, 256, (num_train, 3, 32, 32), dtype=torch.uint8, device=device)
  labels = torch.randint(0, 10, (num_train,), device=device)
  mean = torch.tensor([125.3, 123.0, 113.9], device=device)[None, :, None, None]
  std = torch.tensor([63.0, 62.1, 66.7], device=device)[None, :, None, None]
  steps = num_train // batch_size

  def epoch():
    perm = torch.randperm(num_train, device=device)
    for s in range(steps):
      idx = perm[s * batch_size:(s + 1) * batch_size]
      x = ((augment(images[idx]).float() - mean) / std).contiguous(
          memory_format=torch.channels_last)
      with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16,
                          enabled=cuda):
        loss = F.cross_entropy(model(x), labels[idx])
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
    if cuda:
      torch.cuda.synchronize()

  epoch()  # warm-up (cuDNN autotuning, allocator)
  times = []
  for _ in range(epochs):
    start = time.perf_counter()
    epoch()
    times.append(time.perf_counter() - start)
  return {"device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
          "num_train": num_train, "batch_size": batch_size, "width": width,
          "epoch_s": statistics.median(times), "epoch_times_s": times}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--smoke", action="store_true", help="tiny CPU-sized problem")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--num-train", type=int, default=45000)
  args = parser.parse_args()
  if args.smoke:
    result = time_epochs(num_train=256, batch_size=32, width=4, epochs=2)
  else:
    result = time_epochs(num_train=args.num_train, epochs=args.epochs)
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
