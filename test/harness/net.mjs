// Facts about the host's network that the network tests and the network bench both need.
import fs from 'node:fs';

/** The host's default gateway (IPv4, from /proc/net/route), or undefined without one. */
export function hostGateway() {
  for (const line of fs.readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === '00000000' && f[2] && f[2] !== '00000000') {
      const n = parseInt(f[2], 16);
      return [0, 8, 16, 24].map((s) => (n >>> s) & 255).join('.');
    }
  }
  return undefined;
}
