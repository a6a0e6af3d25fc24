"""Small convolutional autoencoders that imprint up-sampling artifacts on real photos.

Each "family" shares the same strided-convolution encoder and differs only in how the decoder
up-samples, because the up-sampler is what leaves the periodic, spectrally visible traces that
detectors of generated images key on (Zhang, Karaman & Chang, "Detecting and Simulating Artifacts
in GAN Fake Images", WIFS 2019; Odena et al., "Deconvolution and Checkerboard Artifacts", 2016):

- ``autogan``: transposed convolutions (kernel 3, stride 2), the AutoGAN simulator's decoder.
- ``pixelshuffle``: sub-pixel convolution (convolution to 4x channels, then depth-to-space).
- ``upconv``: nearest-neighbour resize followed by convolution ("resize-convolution").

The networks are trained only briefly on real patches, so they reproduce the photo's content
while their decoders still print their structural fingerprint on every pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FAMILIES: tuple[str, ...] = ("autogan", "pixelshuffle", "upconv")

# Total down-sampling of the encoder; inputs are padded to a multiple of it.
STRIDE = 4
# Extra reflected border so the decoder's edge effects fall outside the kept image.
MARGIN = 8


def _up_block(family: str, cin: int, cout: int) -> nn.Sequential:
    if family == "autogan":
        up: nn.Module = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        return nn.Sequential(up, nn.ReLU(inplace=True))
    if family == "pixelshuffle":
        return nn.Sequential(
            nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True)
        )
    if family == "upconv":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
        )
    raise ValueError(f"unknown generator family {family!r}; expected one of {FAMILIES}")


class PatchAutoencoder(nn.Module):
    """Fully convolutional autoencoder: output size equals input size (multiple of STRIDE)."""

    def __init__(self, family: str, width: int = 16) -> None:
        super().__init__()
        self.family = family
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width * 2, width * 2, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            _up_block(family, width * 2, width),
            # The full-resolution stage is kept narrow: it dominates the cost of regenerating
            # large patches on a CPU.
            _up_block(family, width, width // 2),
            nn.Conv2d(width // 2, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Inputs live in [-1, 1]; the decoder predicts the image directly (no skip path), so
        # every output pixel passes through the up-sampler.
        return self.decoder(self.encoder(x))


def train_generator(
    family: str,
    sample_batch: Callable[[np.random.Generator, int, int], np.ndarray],
    *,
    steps: int,
    seed: int,
    batch_size: int = 16,
    crop: int = 64,
    width: int = 16,
    lr: float = 2e-3,
) -> PatchAutoencoder:
    """Train one family as an L1 autoencoder on real crops.

    ``sample_batch(rng, n, crop)`` returns ``n`` uint8 RGB crops shaped (n, crop, crop, 3).
    Seeding both torch and the crop sampler makes the weights reproducible from ``seed``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PatchAutoencoder(family, width)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = torch.from_numpy(sample_batch(rng, batch_size, crop)).permute(0, 3, 1, 2)
        x = batch.float() / 127.5 - 1.0
        loss = F.l1_loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model


@torch.inference_mode()
def apply_generator(model: PatchAutoencoder, image: np.ndarray) -> np.ndarray:
    """Regenerate an (H, W, 3) uint8 image; returns the same shape and dtype."""
    h, w = image.shape[:2]
    x = torch.tensor(image).permute(2, 0, 1)[None].float()
    x = x / 127.5 - 1.0
    ph = MARGIN + (-(h + 2 * MARGIN)) % STRIDE
    pw = MARGIN + (-(w + 2 * MARGIN)) % STRIDE
    x = F.pad(x, (MARGIN, pw, MARGIN, ph), mode="reflect")
    y = model(x)[0, :, MARGIN : MARGIN + h, MARGIN : MARGIN + w]
    y = ((y.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return y.permute(1, 2, 0).numpy()
