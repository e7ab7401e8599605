"""The TinyViT image encoder of LiteMedSAM, as a drop-in `vision_encoder` for transformers' SamModel.

LiteMedSAM (MedSAM team, CVPR 2024 efficient-MedSAM challenge baseline) distils SAM's ViT-B into a
TinyViT (Wu et al., ECCV 2022) that reads 256 px images natively: a stride-1 1x1-conv stem, one
stage of inverted-residual convolutions at full resolution, then three stages of windowed attention
with learned relative-position biases, and SAM's neck, giving the same 256 x 64 x 64 embedding the
SAM prompt encoder and mask decoder expect. Written for samcell-rt from the published architecture;
parameter names follow the `lite_medsam.pth` checkpoint so its encoder loads without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# LiteMedSAM's published encoder: stage widths, depths, heads, attention windows (stage 0 is conv).
DIMS = (64, 128, 160, 320)
DEPTHS = (2, 2, 6, 2)
HEADS = (0, 4, 5, 10)
WINDOWS = (0, 7, 14, 7)
STRIDES = (2, 2, 1)  # the downsampling between stages (LiteMedSAM keeps 64x64 into the last stage)
EMBED = 256


class ConvBN(nn.Sequential):
    """Bias-free convolution followed by batch norm (names `c`, `bn` as in the checkpoint)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class Stem(nn.Module):
    """Per-pixel 3 -> 32 -> 64 projection: no patchify, the 256 px input keeps its resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(3, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class InvertedResidual(nn.Module):
    """Expand 4x (1x1), depthwise 3x3, project back (1x1); residual add, then GELU."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = dim * 4
        self.conv1, self.conv2, self.conv3 = ConvBN(dim, hidden), ConvBN(hidden, hidden, 3, groups=hidden), ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class Downsample(nn.Module):
    """1x1 widen, depthwise 3x3 with the stage stride, 1x1 mix (NCHW in and out)."""

    def __init__(self, dim: int, out: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv3 = ConvBN(dim, out), ConvBN(out, out, 3, stride, groups=out), ConvBN(out, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one square window, with a learned bias per |dy|, |dx| offset."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
        ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        # offsets are numbered row-major over (|dy|, |dx|), the order the checkpoint's table uses
        index = (ys[:, None] - ys[None]).abs() * window + (xs[:, None] - xs[None]).abs()
        self.register_buffer("bias_index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (windows, tokens, dim)
        n, tokens, dim = x.shape
        # the checkpoint packs q, k, v per head: (head, [q | k | v])
        q, k, v = self.qkv(self.norm(x)).view(n, tokens, self.heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5 + self.attention_biases[:, self.bias_index]
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, tokens, dim)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class AttentionBlock(nn.Module):
    """Windowed attention (zero-padded to whole windows), depthwise 3x3 conv, MLP; on (B, H, W, C)."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._windowed(x)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)

    def _windowed(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        s = self.window
        pad_h, pad_w = -h % s, -w % s
        # padded tokens take part in attention unmasked, as in the pretrained model
        y = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        gh, gw = (h + pad_h) // s, (w + pad_w) // s
        y = y.view(b, gh, s, gw, s, c).transpose(2, 3).reshape(b * gh * gw, s * s, c)
        y = self.attn(y).view(b, gh, gw, s, s, c).transpose(2, 3).reshape(b, gh * s, gw * s, c)
        return y[:, :h, :w]


class Stage(nn.Module):
    """Blocks at one resolution, then (except the last stage) a downsample to the next width."""

    def __init__(self, index: int) -> None:
        super().__init__()
        dim = DIMS[index]
        if index == 0:
            blocks = [InvertedResidual(dim) for _ in range(DEPTHS[0])]
        else:
            blocks = [AttentionBlock(dim, HEADS[index], WINDOWS[index]) for _ in range(DEPTHS[index])]
        self.blocks = nn.ModuleList(blocks)
        self.downsample = Downsample(dim, DIMS[index + 1], STRIDES[index]) if index < len(DIMS) - 1 else None
        self.channels_last = index > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # NCHW in and out
        if self.channels_last:
            x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (SAM's neck)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mean) / torch.sqrt(var + self.eps) + self.bias[:, None, None]


@dataclass
class EncoderOutput:
    """What SamModel reads from its vision encoder."""

    last_hidden_state: torch.Tensor
    hidden_states: None = None
    attentions: None = None


class TinyViTEncoder(nn.Module):
    """(B, 3, 256, 256) pixel values -> (B, 256, 64, 64) image embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = Stem(DIMS[0])
        self.layers = nn.ModuleList(Stage(i) for i in range(len(DIMS)))
        self.neck = nn.Sequential(nn.Conv2d(DIMS[-1], EMBED, 1, bias=False), LayerNorm2d(EMBED),
                                  nn.Conv2d(EMBED, EMBED, 3, padding=1, bias=False), LayerNorm2d(EMBED))

    def forward(self, pixel_values: torch.Tensor, **_: object) -> EncoderOutput:
        x = self.patch_embed(pixel_values)
        for stage in self.layers:
            x = stage(x)
        return EncoderOutput(self.neck(x))
