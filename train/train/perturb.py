"""Perturbed copies of an image, for the robustness figures of a model card: what happens to a
verdict when an image is re-compressed, downscaled, or shared on a social network.

``evaluate --perturb`` applies them in memory; the bytes are the same as a file written with
:func:`perturb_image`, so figures from files and from ``--perturb`` agree.
"""

from __future__ import annotations

import io

from PIL import Image

# "social" is what a photo shared on a social network typically goes through: the long side
# brought down to 1080 px, then JPEG quality 80.
PERTURBATIONS = ("jpeg75", "downscale50", "webp75", "social")
SOCIAL_LONG_SIDE = 1080


def perturb_image(img: Image.Image, kind: str) -> tuple[bytes, str]:
    """Encoded bytes and file suffix of one perturbed copy."""
    img = img.convert("L" if img.mode in ("L", "LA") else "RGB")
    buf = io.BytesIO()
    if kind == "jpeg75":
        img.save(buf, "JPEG", quality=75)
        return buf.getvalue(), ".jpg"
    if kind == "webp75":
        img.save(buf, "WEBP", quality=75)
        return buf.getvalue(), ".webp"
    if kind == "downscale50":
        size = (max(1, img.width // 2), max(1, img.height // 2))
        img.resize(size, Image.Resampling.LANCZOS).save(buf, "PNG")
        return buf.getvalue(), ".png"
    if kind == "social":
        scale = SOCIAL_LONG_SIDE / max(img.size)
        if scale < 1:
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        img.save(buf, "JPEG", quality=80)
        return buf.getvalue(), ".jpg"
    raise ValueError(f"unknown perturbation {kind!r}")
