/**
 * Listing containers (`ps`, GET /containers/json) with Docker's filters: keys are ANDed, the
 * values of one key ORed. Reads records and their state only: no runtime call, no settings.
 */
import { BurrowError } from '../errors';
import { Containers, type ContainerRecord } from '../container/records';
import { containerState, type ContainerState } from '../container/state';
import { dirReader, type DirReader } from '../container/dir-cache';
import { isFrozen } from '../container/freezer';
import { readHealth, type HealthStatus } from '../container/health';
import type { EngineContext } from './context';
import { humanAge } from '../format/age';

export interface ListRequest {
  /** Stopped and created containers too (`-a`). */
  all?: boolean;
  /** The n most recently created (`-n`; implies all). */
  last?: number;
  /** Docker's filters: id, name, label, status, ancestor, exited, before, since, health. */
  filters?: Record<string, string[]>;
}

export interface ListEntry {
  rec: ContainerRecord;
  state: ContainerState;
  /** Docker's State: created, running, paused, exited. */
  status: 'created' | 'running' | 'paused' | 'exited';
  /** Its healthcheck's status (absent: it has none, or it has not started). */
  health?: HealthStatus;
}

export const LIST_FILTERS = ['id', 'name', 'label', 'status', 'ancestor', 'exited', 'before', 'since', 'health'];
const HEALTH_VALUES = ['starting', 'healthy', 'unhealthy', 'none'];
const STATUSES = ['created', 'restarting', 'running', 'removing', 'paused', 'exited', 'dead'];

/** `-f key=value` flags as Docker's filters map. */
export function filtersFromFlags(flags: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const f of flags) {
    const i = f.indexOf('=');
    if (i <= 0) throw new BurrowError('EUSAGE', `invalid filter ${f}: want KEY=VALUE`);
    (out[f.slice(0, i)] ??= []).push(f.slice(i + 1));
  }
  return out;
}

function nameMatches(name: string, pattern: string): boolean {
  try {
    return new RegExp(pattern.replace(/^\//, '')).test(name);
  } catch {
    return name.includes(pattern);
  }
}

function labelMatches(labels: Record<string, string>, v: string): boolean {
  const i = v.indexOf('=');
  if (i < 0) return v in labels;
  const k = v.slice(0, i);
  return k in labels && labels[k] === v.slice(i + 1);
}

/**
 * Parsed records by container directory, with the key of the directory's contents they were
 * read under: the service lists the same containers again and again, and parsing every record
 * each time was a tenth of a listing. Reused only while the directory is unchanged (dir-cache.ts:
 * a rename, `update` or any new run changes it). Callers must not modify a listed record.
 */
const parsed = new Map<string, { key: string; rec: ContainerRecord }>();

/** Every container's record, its directory and a reader of that directory (one stat each). */
function records(containers: Containers): { rec: ContainerRecord; dir: string; files: DirReader }[] {
  const out: { rec: ContainerRecord; dir: string; files: DirReader }[] = [];
  for (const id of containers.ids()) {
    // Joined by hand, as records.ts does: path.join would be a tenth of a listing's time.
    const dir = `${containers.store.root}/containers/${id}`;
    const files = dirReader(dir);
    const hit = files.key === undefined ? undefined : parsed.get(dir);
    const rec = hit && hit.key === files.key ? hit.rec : containers.get(id);
    if (!rec) continue;
    if (files.key !== undefined) parsed.set(dir, { key: files.key, rec });
    out.push({ rec, dir, files });
  }
  // Removed containers' records go.
  if (parsed.size > out.length) {
    const listed = new Set(out.map((r) => r.dir));
    for (const d of parsed.keys()) if (!listed.has(d)) parsed.delete(d);
  }
  return out;
}

export function listContainers(ctx: Pick<EngineContext, 'store'>, req: ListRequest = {}): ListEntry[] {
  const filters = req.filters ?? {};
  for (const [k, vs] of Object.entries(filters)) {
    if (!LIST_FILTERS.includes(k)) throw new BurrowError('EUSAGE', `invalid filter '${k}'`);
    if (k === 'status') for (const v of vs) if (!STATUSES.includes(v)) throw new BurrowError('EUSAGE', `invalid filter 'status=${v}'`);
    if (k === 'health') for (const v of vs) if (!HEALTH_VALUES.includes(v)) throw new BurrowError('EUSAGE', `invalid filter 'health=${v}': want ${HEALTH_VALUES.join(', ')}`);
    if (k === 'exited') for (const v of vs) if (!/^-?\d+$/.test(v)) throw new BurrowError('EUSAGE', `invalid filter 'exited=${v}'`);
  }
  const containers = new Containers(ctx.store);
  // Newest first. ISO times compare as strings; not with localeCompare, whose first call loads
  // ICU's collator: 5-20 ms, as much as the rest of `ps`.
  const recs = records(containers).sort((a, b) => (a.rec.created < b.rec.created ? 1 : a.rec.created > b.rec.created ? -1 : 0));
  // before/since name containers: by creation time, as Docker compares them.
  const at = (k: 'before' | 'since'): string[] => (filters[k] ?? []).map((ref) => containers.find(ref).created);
  const before = at('before');
  const since = at('since');
  const rows = recs.map(({ rec, dir, files }): ListEntry => {
    const state = containerState(rec, dir, files);
    // Only a container in cgroups of its own can be paused (and a cgroup read costs a /proc read).
    const status = state.status === 'running' && state.cgroups !== false && isFrozen(state.pid) ? 'paused' : state.status;
    const health = rec.healthcheck ? readHealth(rec.healthcheck, dir, status)?.Status : undefined;
    return { rec, state, status, ...(health ? { health } : {}) };
  });
  const any = (k: string, test: (v: string) => boolean): boolean => !filters[k]?.length || filters[k].some(test);
  const shown = rows.filter(({ rec, state, status, health }) => {
    // Without -a (or a filter on the state), only running containers, as Docker lists them.
    const stateFiltered = !!filters.status?.length || !!filters.exited?.length;
    if (!req.all && req.last === undefined && !stateFiltered && status !== 'running' && status !== 'paused') return false;
    return (
      any('id', (v) => rec.id.startsWith(v)) &&
      any('name', (v) => nameMatches(rec.name, v)) &&
      (filters.label ?? []).every((v) => labelMatches(rec.labels, v)) &&
      any('status', (v) => v === status) &&
      any('ancestor', (v) => rec.imageName === v || rec.imageName === `${v}:latest` || rec.image.startsWith(v.replace(/^sha256:/, '')) || rec.image.includes(v)) &&
      any('exited', (v) => state.status === 'exited' && state.exitCode === Number(v)) &&
      any('health', (v) => v === (health ?? 'none')) &&
      before.every((t) => rec.created < t) &&
      since.every((t) => rec.created > t)
    );
  });
  return req.last !== undefined && req.last >= 0 ? shown.slice(0, req.last) : shown;
}

/**
 * Docker's Status text: `Up 5 minutes`, `Up 2 hours (Paused)`, `Up 3 seconds (healthy)`,
 * `Up 1 second (health: starting)`, `Exited (0) 3 seconds ago`, `Created`.
 */
export function statusText(e: Pick<ListEntry, 'state' | 'status' | 'health'>, now = Date.now()): string {
  const st = e.state;
  if (st.status === 'running') {
    const health = e.health === 'starting' ? ' (health: starting)' : e.health ? ` (${e.health})` : '';
    return `Up ${humanAge(st.startedAt, now)}${e.status === 'paused' ? ' (Paused)' : health}`;
  }
  if (st.status === 'exited') return `Exited (${st.exitCode}) ${humanAge(st.finishedAt, now)} ago`;
  return 'Created';
}
