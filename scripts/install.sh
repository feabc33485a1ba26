#!/usr/bin/env bash
# Puts `burrow` on PATH for the current user, without root: a symlink in $PREFIX/bin (default
# ~/.local/bin, which Debian's ~/.profile adds to PATH when it exists) to this checkout's native
# launcher, target/release/burrow, when it is built (`npm run build` builds it: it runs a planned
# `burrow run` without starting Node and hands every other command to bin/burrow.js), else to
# bin/burrow.js itself. The checkout must stay where it is (the link points into it); run it again
# after moving the checkout or building the launcher. `scripts/install.sh --uninstall` removes the
# link, whichever of the two it points to.
# `--docker-shim` also links `docker` to contrib/docker, which runs burrow (opt-in, as Debian's
# podman-docker: it shadows a real docker CLI later on PATH); `--uninstall` removes it too.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-$HOME/.local}
link="$prefix/bin/burrow"
shim="$prefix/bin/docker"
uninstall=0
with_shim=0
for arg in "$@"; do
  case "$arg" in
    --uninstall) uninstall=1 ;;
    --docker-shim) with_shim=1 ;;
    *) echo "install: unknown argument $arg (want --docker-shim or --uninstall)" >&2; exit 2 ;;
  esac
done
if [ "$uninstall" = 1 ]; then
  if [ -L "$link" ]; then rm -f "$link"; echo "removed $link"; fi
  if [ -L "$shim" ] && [ "$(readlink "$shim")" = "$here/contrib/docker" ]; then rm -f "$shim"; echo "removed $shim"; fi
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
target="$here/bin/burrow.js"
if [ -f "$here/target/release/burrow" ] && [ -x "$here/target/release/burrow" ]; then
  target="$here/target/release/burrow"
fi
ln -sfn "$target" "$link"
if [ "$target" = "$here/bin/burrow.js" ]; then
  echo "installed $link -> $target"
  echo "note: the native launcher (target/release/burrow) is not built, so every command starts Node; 'npm run build' builds it, then run this again"
else
  echo "installed $link -> $target (the native launcher: it runs Node's CLI, bin/burrow.js, for what it does not serve itself)"
fi
if [ "$with_shim" = 1 ]; then
  if [ -e "$shim" ] && { [ ! -L "$shim" ] || [ "$(readlink "$shim")" != "$here/contrib/docker" ]; }; then
    echo "install: $shim exists and is not burrow's docker shim; remove it or set PREFIX to another directory" >&2
    exit 1
  fi
  ln -sfn "$here/contrib/docker" "$shim"
  echo "installed $shim -> $here/contrib/docker (docker runs burrow)"
fi
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on your PATH yet: add  export PATH=\"$prefix/bin:\$PATH\"  to ~/.profile (or log in again if it was just created)" ;;
esac
