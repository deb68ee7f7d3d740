"""The original notebook's convolution, built from `F.unfold` and `F.fold`.

It computes exactly what `F.conv2d(x, w, stride=stride, groups=groups)` computes (no
padding: the network pads with -1 itself); tests hold it against `F.conv2d`.
"""

import torch
import torch.nn.functional as F


def unfold_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int = 1,
                  groups: int = 1) -> torch.Tensor:
    """Grouped 2-d convolution as unfold -> matrix product -> fold."""
    n, c, h, w = x.shape
    out_c, c_per_group, kh, kw = weight.shape
    assert c == c_per_group * groups and out_c % groups == 0, "channels do not match groups"
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    patches = F.unfold(x, (kh, kw), stride=stride)  # (n, c*kh*kw, oh*ow), channel-major
    patches = patches.view(n, groups, c_per_group * kh * kw, oh * ow)
    kernels = weight.view(groups, out_c // groups, c_per_group * kh * kw)
    out = torch.einsum("gok,ngkl->ngol", kernels, patches).reshape(n, out_c, oh * ow)
    return F.fold(out, (oh, ow), kernel_size=1)  # (n, out_c, oh, ow)

