"""Tests run on tiny problems, where torch's intra-op threads only contend with the pytest-xdist workers."""

import torch

torch.set_num_threads(1)
