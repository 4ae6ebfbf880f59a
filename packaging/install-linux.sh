#!/usr/bin/env bash
# Install Lightbox into its own virtual environment with a desktop entry.
#   packaging/install-linux.sh [--wheelhouse DIR] [PREFIX]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
wheelhouse=""
if [ "${1:-}" = "--wheelhouse" ]; then wheelhouse=$2; shift 2; fi
prefix=${1:-$HOME/.local/opt/lightbox}
python3 -m venv "$prefix"
# the app reads resources/ and weights/manifest.toml beside its packages: install a copy of the tree
mkdir -p "$prefix/src"
(cd "$here" && git ls-files -z 2>/dev/null | xargs -0 tar cf - 2>/dev/null || tar cf - --exclude=.venv --exclude=.git .) | tar xf - -C "$prefix/src"
if [ -n "$wheelhouse" ]; then
  "$prefix/bin/pip" install --no-index --find-links "$wheelhouse" -e "$prefix/src"
else
  "$prefix/bin/pip" install -e "$prefix/src"
fi
mkdir -p "$HOME/.local/bin" "$HOME/.local/share/applications"
ln -sf "$prefix/bin/lightbox" "$HOME/.local/bin/lightbox"
sed "s|@LIGHTBOX@|$prefix/bin/lightbox|" "$here/packaging/lightbox.desktop" > "$HOME/.local/share/applications/lightbox.desktop"
echo "installed: $HOME/.local/bin/lightbox (weights: lightbox weights install FILE)"
