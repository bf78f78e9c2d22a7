"""The CIFAR-10 AM-LFS example (``python examples/amlfs_cifar10.py``): model, data, run, plots."""
