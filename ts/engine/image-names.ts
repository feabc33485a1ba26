/**
 * Image names as Docker shows and matches them. Small and free of heavy imports: the CLI loads it
 * at start-up.
 */

/** The repository as `images` shows it: Docker Hub's official images without their prefix. */
export function shownRepository(full: string): string {
  return full.replace(/^docker\.io\/(library\/)?/, '');
}

/** A `repository:tag` (or `repository@digest`) as `images` shows it. */
export function shownTag(repoTag: string): string {
  const at = repoTag.indexOf('@');
  const i = at >= 0 ? at : repoTag.lastIndexOf(':');
  return `${shownRepository(repoTag.slice(0, i))}${repoTag.slice(i)}`;
}

/** Go's path.Match for one name: `*` any run without `/`, `?` one such character. */
function glob(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')}$`);
}

/**
 * `images REPOSITORY[:TAG]` (and the `reference` filter) as Docker matches: the repository as
 * shown (`busybox`, `localhost:5000/busybox`) or in full (`docker.io/library/busybox`), then the
 * tag if given. A predicate over a stored repository (in full) and tag.
 */
export function referenceFilter(reference: string): (full: string, tag: string) => boolean {
  const at = reference.lastIndexOf(':');
  const hasTag = at > reference.lastIndexOf('/');
  const repo = hasTag ? reference.slice(0, at) : reference;
  const tag = hasTag ? glob(reference.slice(at + 1)) : undefined;
  const first = repo.split('/')[0]!;
  // A name without a registry is Docker Hub's (library/ for a single component).
  const hub = repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? undefined : `docker.io/${repo.includes('/') ? repo : `library/${repo}`}`;
  const names = [glob(repo), ...(hub ? [glob(hub)] : [])];
  return (full, t) => names.some((n) => n.test(full) || n.test(shownRepository(full))) && (!tag || tag.test(t));
}

