// Types of registry.mjs for the TypeScript tests (tsconfig.test.json).

export type RegistryMode = 'anonymous' | 'htpasswd' | 'token' | 'tls';

/** A registry started by startRegistry; fields marked by mode exist in that mode only. */
export interface Registry {
  mode: RegistryMode;
  /** 127.0.0.1:PORT */
  host: string;
  /** http(s)://HOST */
  url: string;
  dir: string;
  storageDir: string;
  logFile: string;
  pid: number;
  /** What the token server was asked (token mode): each request's scope parameters. */
  stats: { tokenRequests: number; scopes: string[][] };
  /** htpasswd and token modes. */
  user?: string;
  password?: string;
  /** token mode: the realm of its Bearer challenge. */
  tokenRealm?: string;
  /** tls mode: the test CA, a certs.d directory with HOST/ca.crt, and certs.d/HOST itself. */
  caFile?: string;
  certsDir?: string;
  certDir?: string;
  log(): string;
  /** Stops the registry (and its token server); `keep` leaves its directory for a look. */
  stop(opts?: { keep?: boolean }): Promise<void>;
}

export interface RegistryOptions {
  mode?: RegistryMode;
  user?: string;
  password?: string;
  /** token mode: anonymous callers may pull. */
  anonymousPull?: boolean;
  /** token mode: the tokens' lifetime in seconds. */
  tokenTtl?: number;
}

/** The key and certificate a token server signs with. */
export interface Signer {
  keyFile: string;
  certFile: string;
  privateKey: import('node:crypto').KeyObject;
  x5c: string[];
}

export const REGISTRY_BIN: string;
export const MODES: RegistryMode[];
/** A JWT as distribution's token auth wants it: ES256, the signer's certificate in x5c. */
export function signJwt(signer: Signer, claims: Record<string, unknown>): string;
/** A Registry of one mode, with the fields that mode always has. */
export interface RegistryByMode {
  anonymous: Registry & { mode: 'anonymous' };
  htpasswd: Registry & { mode: 'htpasswd'; user: string; password: string };
  token: Registry & { mode: 'token'; user: string; password: string; tokenRealm: string };
  tls: Registry & { mode: 'tls'; caFile: string; certsDir: string; certDir: string };
}

export function startRegistry<M extends RegistryMode = 'anonymous'>(opts?: RegistryOptions & { mode?: M }): Promise<RegistryByMode[M]>;
/** The path of a blob's data in a registry's storage (to tamper with it in tests). */
export function blobDataPath(registry: Registry, digest: string): string;
