// siftool (github.com/sylabs/sif/v2's CLI), which the one-file image tests use to make SIF files.
// Not packaged in Debian 12: .ci/setup builds it from the Go module at a pinned version through
// the Go module proxy into /var/cache/burrow-test/siftool/VERSION (as it builds crictl).
//   siftoolPath()   the binary (SIFTOOL overrides), or an Error that says how to get it
import fs from 'node:fs';
import path from 'node:path';

export const SIFTOOL_VERSION = 'v2.21.0';
const CACHE = '/var/cache/burrow-test/siftool';

export function siftoolPath() {
  const candidates = [process.env.SIFTOOL, path.join(CACHE, SIFTOOL_VERSION, 'siftool')].filter(Boolean);
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new Error(`siftool ${SIFTOOL_VERSION} not found in ${CACHE}: run \`bash .ci/setup\` (it builds it through the Go module proxy), or set SIFTOOL`);
}
