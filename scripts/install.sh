#!/usr/bin/env bash
# Puts `burrow` on PATH for the current user, without root: a symlink in $PREFIX/bin (default
# ~/.local/bin, which Debian's ~/.profile adds to PATH when it exists) to this checkout's
# bin/burrow.js. The checkout must stay where it is (the link points into it); run it again after
# moving the checkout. `scripts/install.sh --uninstall` removes the link.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-$HOME/.local}
link="$prefix/bin/burrow"
if [ "${1:-}" = "--uninstall" ]; then
  if [ -L "$link" ]; then rm -f "$link"; echo "removed $link"; fi
  exit 0
fi
if [ ! -f "$here/dist/bundle/burrow.js" ] && [ ! -f "$here/dist/cli/main.js" ]; then
  echo "install: burrow is not built yet: run 'npm ci' in $here first" >&2
  exit 1
fi
if [ -e "$link" ] && [ ! -L "$link" ]; then
  echo "install: $link exists and is not a symlink; remove it or set PREFIX to another directory" >&2
  exit 1
fi
mkdir -p "$prefix/bin"
ln -sfn "$here/bin/burrow.js" "$link"
echo "installed $link -> $here/bin/burrow.js"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on your PATH yet: add  export PATH=\"$prefix/bin:\$PATH\"  to ~/.profile (or log in again if it was just created)" ;;
esac
