/**
 * Image references, parsed and normalised the way Docker does (distribution/reference's
 * `ParseNormalizedNamed` + `TagNameOnly`): `alpine` is docker.io/library/alpine:latest, a first
 * path component is a registry only when it has a `.` or `:`, is `localhost`, or has uppercase
 * letters; repository names are lowercase; digests are checked for a known algorithm and length.
 * Also owns digest strings (`sha256:<hex>`), since references and manifests both carry them.
 */
import { BurrowError } from '../errors';

export const DOCKER_HUB = 'docker.io';
/** Where docker.io's registry API actually lives. */
export const DOCKER_HUB_API = 'registry-1.docker.io';
const LEGACY_HUB = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const DEFAULT_TAG = 'latest';
const NAME_MAX = 255;

// The grammar of distribution/reference (regexp.go), kept in the same pieces so the two can be
// compared line by line. JavaScript and Go (RE2) agree on these: no backreferences, leftmost-first.
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const NAME = `(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const REPOSITORY_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

/** Digest algorithms Docker accepts, with the length of their hex encoding. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

export type DigestAlgorithm = 'sha256' | 'sha384' | 'sha512';

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

function invalid(input: string, why: string): BurrowError {
  return new BurrowError(
    'EREF_INVALID',
    `invalid reference format: ${why}: "${input}"`,
    'an image reference looks like NAME[:TAG][@DIGEST], e.g. alpine, alpine:3.20, ghcr.io/owner/name:tag, localhost:5000/name@sha256:<64 hex>',
  );
}

/** Checks a digest string (`algorithm:hex`) as go-digest does; throws EREF_INVALID. */
export function parseDigest(s: string): ParsedDigest {
  const i = s.indexOf(':');
  if (i <= 0 || !new RegExp(`^${DIGEST}$`).test(s)) throw invalid(s, 'invalid checksum digest format');
  const algorithm = s.slice(0, i);
  const hex = s.slice(i + 1);
  const want = DIGEST_HEX_LENGTH[algorithm];
  if (want === undefined) throw invalid(s, `unsupported digest algorithm "${algorithm}"`);
  if (hex.length !== want) throw invalid(s, `invalid checksum digest length (${algorithm} needs ${want} hex digits)`);
  if (!/^[a-f0-9]+$/.test(hex)) throw invalid(s, 'invalid checksum digest format (hex digits must be lowercase)');
  return { algorithm: algorithm as DigestAlgorithm, hex };
}

export function isDigest(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

/** A parsed, normalised image reference. */
export class ImageRef {
  /** The registry as named: `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`. */
  readonly registry: string;
  /** The repository path inside the registry: `library/alpine`, `owner/name`. */
  readonly repository: string;
  /** The tag, or undefined when the reference names only a digest. */
  readonly tag: string | undefined;
  /** The digest (`sha256:<hex>`), when the reference pins one. */
  readonly digest: string | undefined;

  constructor(registry: string, repository: string, tag: string | undefined, digest: string | undefined) {
    this.registry = registry;
    this.repository = repository;
    this.tag = tag;
    this.digest = digest;
  }

  /** `registry/repository`, e.g. docker.io/library/alpine. */
  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  /** The host (and port) to speak the registry API to: docker.io is served by registry-1.docker.io. */
  get apiHost(): string {
    return registryApiHost(this.registry);
  }

  /** What to ask the registry for: the digest when pinned (it wins over a tag, as in Docker), else the tag. */
  get reference(): string {
    return this.digest ?? this.tag ?? DEFAULT_TAG;
  }

  /** The name as Docker shows it: `alpine`, `user/repo`, `quay.io/x/y`. */
  familiarName(): string {
    if (this.registry !== DOCKER_HUB) return this.name;
    if (this.repository.startsWith(OFFICIAL_PREFIX)) {
      const rest = this.repository.slice(OFFICIAL_PREFIX.length);
      if (!rest.includes('/')) return rest;
    }
    return this.repository;
  }

  /** Docker's short form: `alpine:latest`, `user/repo@sha256:…`. */
  familiar(): string {
    return this.familiarName() + this.suffix();
  }

  /** The fully qualified form: `docker.io/library/alpine:latest`. */
  canonical(): string {
    return this.name + this.suffix();
  }

  toString(): string {
    return this.canonical();
  }

  withDigest(digest: string): ImageRef {
    parseDigest(digest);
    return new ImageRef(this.registry, this.repository, this.tag, digest);
  }

  withTag(tag: string): ImageRef {
    if (!TAG_RE.test(tag)) throw invalid(tag, 'invalid tag');
    return new ImageRef(this.registry, this.repository, tag, undefined);
  }

  /** The same repository in another registry (used for mirrors). */
  inRegistry(registry: string): ImageRef {
    return new ImageRef(registry, this.repository, this.tag, this.digest);
  }

  private suffix(): string {
    return (this.tag !== undefined ? `:${this.tag}` : '') + (this.digest !== undefined ? `@${this.digest}` : '');
  }
}

/** The host serving a registry's API. */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}

/** docker.io's split of a name into registry and remainder (splitDockerDomain). */
function splitDomain(name: string): [string, string] {
  const i = name.indexOf('/');
  let domain: string;
  let rest: string;
  const first = i === -1 ? '' : name.slice(0, i);
  if (i === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DOCKER_HUB;
    rest = name;
  } else {
    domain = first;
    rest = name.slice(i + 1);
  }
  if (domain === LEGACY_HUB) domain = DOCKER_HUB;
  if (domain === DOCKER_HUB && !rest.includes('/')) rest = OFFICIAL_PREFIX + rest;
  return [domain, rest];
}

/**
 * Parses and normalises an image reference as `docker pull` does. A reference with neither tag
 * nor digest gets the tag `latest`; one with only a digest keeps `tag` undefined.
 */
export function parseReference(input: string): ImageRef {
  if (typeof input !== 'string' || input === '') throw invalid(String(input), 'repository name must have at least one component');
  if (IDENTIFIER_RE.test(input)) {
    throw invalid(input, 'cannot specify 64-byte hexadecimal strings as a repository name (an image ID is not a reference)');
  }
  const [domain, rest] = splitDomain(input);
  const colon = rest.indexOf(':');
  const remote = colon === -1 ? rest : rest.slice(0, colon);
  if (remote.toLowerCase() !== remote) throw invalid(input, `repository name (${remote}) must be lowercase`);

  const full = `${domain}/${rest}`;
  const m = REFERENCE_RE.exec(full);
  if (!m) {
    if (REFERENCE_RE.test(full.toLowerCase())) throw invalid(input, 'repository name must be lowercase');
    throw invalid(input, 'not a valid image reference');
  }
  const name = m[1] ?? '';
  if (name.length > NAME_MAX) throw invalid(input, `repository name must not be more than ${NAME_MAX} characters`);
  const tag = m[2];
  const digest = m[3];
  if (digest !== undefined) parseDigest(digest);
  // The name matched with the domain split off by splitDomain; the regexp's own optional domain
  // group would accept `docker.io/x` inside `rest`, so cut at the domain we chose.
  const repository = name.slice(domain.length + 1);
  if (!DOMAIN_RE.test(domain) || !REPOSITORY_RE.test(repository)) throw invalid(input, 'not a valid image reference');
  return new ImageRef(domain, repository, digest === undefined && tag === undefined ? DEFAULT_TAG : tag, digest);
}

/** Parses `registry/repository` without tag or digest (e.g. for a push target's `from` repository). */
export function parseRepository(input: string): ImageRef {
  const ref = parseReference(input);
  if (input.includes('@') || /:[^/]*$/.test(input.slice(input.lastIndexOf('/') + 1))) {
    throw invalid(input, 'a repository name has no tag or digest');
  }
  return new ImageRef(ref.registry, ref.repository, undefined, undefined);
}
