"""Test helper: multiply-adds of a built torch module, counted by forward hooks (the
independent check of ``space.counting``)."""
from __future__ import annotations


def hook_madds(model, shape) -> int:
    """Multiply-adds of every conv and linear, from forward hooks."""
    import torch
    from torch import nn

    total = [0]

    def conv(m, inp, out):
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * \
            m.kernel_size[0] * m.kernel_size[1]

    def lin(m, inp, out):
        total[0] += m.in_features * m.out_features

    hs = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else lin)
          for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(shape))
    for h in hs:
        h.remove()
    return total[0]
