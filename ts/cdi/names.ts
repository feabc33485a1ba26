/**
 * CDI's names: a kind `VENDOR/CLASS` (vendor a DNS-like name, class alphanumerics with `_ - .`)
 * and a fully qualified device `VENDOR/CLASS=NAME`, as the CDI spec defines them. What
 * `--device` takes is a CDI device exactly when it is qualified; everything else is a host path
 * (Docker's `HOST[:CONTAINER][:PERMISSIONS]`), so the two never overlap: a host path starts
 * with `/`, a CDI name never does.
 */

const VENDOR = /^[A-Za-z](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;
const CLASS = /^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$/;
const DEVICE = /^[A-Za-z0-9](?:[A-Za-z0-9_.:-]*[A-Za-z0-9])?$/;

export interface QualifiedName {
  kind: string;
  name: string;
}

/** `VENDOR/CLASS` with valid parts (the spec's `kind`). */
export function isKind(s: string): boolean {
  const i = s.indexOf('/');
  return i > 0 && VENDOR.test(s.slice(0, i)) && CLASS.test(s.slice(i + 1));
}

export function isDeviceName(s: string): boolean {
  return DEVICE.test(s);
}

/** `VENDOR/CLASS=NAME` split, or undefined when `s` is not a qualified CDI device name. */
export function parseQualified(s: string): QualifiedName | undefined {
  const eq = s.indexOf('=');
  if (eq < 0) return undefined;
  const kind = s.slice(0, eq);
  const name = s.slice(eq + 1);
  return isKind(kind) && isDeviceName(name) ? { kind, name } : undefined;
}

/**
 * Whether a `--device` value means a CDI device. `VENDOR/CLASS=` with a bad name is still meant
 * as one (parseQualified then says what is wrong), never as a relative host path.
 */
export function looksQualified(s: string): boolean {
  return !s.startsWith('/') && /^[^/=:]+\/[^/=:]+=/.test(s);
}
