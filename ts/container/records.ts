/**
 * Container records: one directory per container in the store, holding its record, its OCI
 * bundle, its writable layer and its /etc files. Names are claimed with an atomic symlink, so
 * two `run --name x` at once cannot both win.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BurrowError } from '../errors';
import { mkdirp, pidAlive, readJson, removeTree, writeJsonAtomic } from '../storage/fsutil';
import type { Store } from '../storage/store';

/** Docker's restart policy (`--restart`, HostConfig.RestartPolicy). */
export interface RestartPolicy {
  name: 'no' | 'on-failure' | 'always' | 'unless-stopped';
  maximumRetryCount: number;
}

/** Docker's Config.Healthcheck: durations in nanoseconds, as the API has them. */
export interface Healthcheck {
  /** [] inherit, ["NONE"], ["CMD", args...] or ["CMD-SHELL", command]. */
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  /** Between probes while starting within the start period (Docker's --health-start-interval). */
  StartInterval?: number;
  Retries?: number;
}

export interface ContainerRecord {
  id: string;
  name: string;
  image: string;
  imageName: string;
  created: string;
  command: string[];
  tty: boolean;
  interactive: boolean;
  /**
   * Docker's StdinOnce: the end of the first attached client's input closes the container's
   * stdin (`docker run -i`, not `run -d -i`). Absent: `interactive && !detached` (the CLI's).
   */
  stdinOnce?: boolean;
  /**
   * Docker's Config.AttachStdin/AttachStdout/AttachStderr as the API's create asked them (a
   * client such as docker-compose's `run` reads them back to decide what to attach). Absent:
   * the CLI's run, attached unless detached.
   */
  attachStreams?: { stdin: boolean; stdout: boolean; stderr: boolean };
  autoRemove: boolean;
  detached: boolean;
  stopSignal: string;
  stopTimeout: number;
  labels: Record<string, string>;
  /** Where burrow-runtime keeps this container's state. */
  runtimeRoot: string;
  /** 'systemd': the runtime asks systemd for a scope (`--systemd-cgroup`); absent: cgroupfs. */
  cgroupManager?: 'systemd';
  logPath: string;
  logDriver: 'k8s-file' | 'json-file' | 'none';
  hostname: string;
  network: string;
  /** The network as parsed from the flags; absent in records from before networking. */
  net?: import('../network/options').NetworkRecord;
  /**
   * Docker's restart policy, kept by the monitor (burrow-runtime's holder): absent or 'no' never
   * restarts; 'on-failure' restarts after a non-zero exit, at most `maximumRetryCount` times
   * (0: no limit); 'always' and 'unless-stopped' after any exit. A `stop` or `kill` by the user
   * is never followed by a restart.
   */
  restartPolicy?: RestartPolicy;
  /**
   * Docker's Healthcheck: the user's merged over the image's (ts/container/health.ts), run by the
   * container's monitor, which keeps its state in health.json.
   */
  healthcheck?: Healthcheck;
  mounts: { type: string; source: string; destination: string; mode: string; rw: boolean; name?: string }[];
  /** What `inspect` shows of the flags (Docker's HostConfig and Config); absent in older records. */
  config?: {
    user: string;
    entrypoint: string[] | null;
    cmd: string[];
    binds: string[];
    tmpfs: Record<string, string>;
    readOnly: boolean;
    privileged: boolean;
    capAdd: string[];
    capDrop: string[];
    securityOpt: string[];
    workdir: string;
    /** `--expose` (Docker's ExposedPorts keys), beside the image's. */
    exposedPorts?: string[];
  };
}

/**
 * Random bytes from /dev/urandom, the kernel's CSPRNG that node:crypto draws from as well:
 * loading node:crypto costs `burrow run` ~3 ms, more than everything else in this module.
 */
function randomBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  try {
    const fd = fs.openSync('/dev/urandom', 'r');
    try {
      if (fs.readSync(fd, b, 0, n, null) === n) return b;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* no /dev/urandom (a minimal chroot): node:crypto below */
  }
  // node:crypto only without /dev/urandom (loading it at start-up costs `burrow run` time).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node:crypto') as typeof import('node:crypto')).randomBytes(n);
}

const isRecord = (v: unknown): v is ContainerRecord => typeof v === 'object' && v !== null && typeof (v as ContainerRecord).id === 'string';

/** The words of generated names (ADJ_NOUN); a run plan carries them for the launcher (ts/container/run-plan.ts). */
export const ADJ = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lucid', 'merry', 'nifty', 'proud', 'quirky', 'sharp', 'tender', 'vivid', 'witty', 'zen'];
export const NOUN = ['badger', 'otter', 'mole', 'vole', 'hare', 'fox', 'stoat', 'weasel', 'marmot', 'gopher', 'wombat', 'meerkat', 'shrew', 'hedgehog', 'prairie', 'lemming'];

export function generateName(): string {
  const r = randomBytes(2);
  return `${ADJ[r[0]! % ADJ.length]}_${NOUN[r[1]! % NOUN.length]}`;
}

export const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export class Containers {
  constructor(readonly store: Store) {}

  dir(id: string): string {
    return this.store.p('containers', id);
  }

  /**
   * Deletes a container's directory so that it disappears at once: renamed aside first (`all()`
   * and `find()` know only 64-hex names), then emptied. Deleted in place, its record.json could
   * go before the rest, and `ps` would stop listing a container whose files are still there.
   */
  removeDir(id: string): void {
    const dir = this.dir(id);
    const aside = this.store.p('containers', `.removing-${id}-${process.pid}`);
    let target = dir;
    try {
      fs.renameSync(dir, aside);
      target = aside;
    } catch {
      /* gone already, or not ours to rename: delete in place */
    }
    // Retried: a monitor finishing its last writes may add a file while the tree is emptied.
    removeTree(target);
    // What a killed `rm` left aside goes when the directory is next read whole (ids: ps -a,
    // prune), not here: a scan of every container's name per `rm` is the store's largest
    // directory read once more, a READDIR storm on a network file system.
  }

  /** Deletes what a killed `rm` left aside (`.removing-ID-PID` of a process that is gone). */
  private sweepAside(names: string[]): void {
    for (const n of names) {
      const pid = Number(/^\.removing-[a-f0-9]{64}-(\d+)$/.exec(n)?.[1]);
      if (pid && pid !== process.pid && !pidAlive(pid)) fs.rmSync(this.store.p('containers', n), { recursive: true, force: true });
    }
  }

  /** Where the name's link is (containers/.names/NAME); the directory is made by claimName only. */
  private namePath(name: string): string {
    return this.store.p('containers', '.names', name);
  }

  newId(): string {
    return randomBytes(32).toString('hex');
  }

  /** Claims `name` for `id`; fails if another container has it. */
  claimName(name: string, id: string): void {
    if (!NAME_RE.test(name)) throw new BurrowError('EUSAGE', `invalid container name "${name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    try {
      try {
        fs.symlinkSync(id, this.namePath(name));
      } catch (err) {
        // The names' directory made on the first claim only, not re-made on every one.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        mkdirp(path.dirname(this.namePath(name)));
        fs.symlinkSync(id, this.namePath(name));
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const other = fs.readlinkSync(this.namePath(name));
      // Docker's words, which scripts match on.
      throw new BurrowError('ECONTAINER_EXISTS', `Conflict. The container name "/${name}" is already in use by container "${other}". You have to remove (or rename) that container to be able to reuse that name.`);
    }
  }

  releaseName(name: string, id: string): void {
    const p = this.namePath(name);
    try {
      if (fs.readlinkSync(p) === id) fs.unlinkSync(p);
    } catch {
      /* already gone */
    }
  }

  /** `rename`: the new name is claimed before the old one is let go, so both never fail. */
  rename(rec: ContainerRecord, newName: string): ContainerRecord {
    const name = newName.replace(/^\//, '');
    if (name === rec.name) throw new BurrowError('EUSAGE', `renaming a container with the same name as its current name (${name})`);
    this.claimName(name, rec.id);
    const renamed = { ...rec, name };
    try {
      this.save(renamed);
    } catch (err) {
      this.releaseName(name, rec.id);
      throw err;
    }
    this.releaseName(rec.name, rec.id);
    return renamed;
  }

  /**
   * Atomic always; fsynced unless the container is --rm, whose record lives as long as its run:
   * the fsync was 0.5 to 20 ms of a `run --rm` on this project's CI machines (ext4). podman's storage
   * keeps its --rm containers the same way (containers/storage: volatile-containers.json,
   * "written without fsync()"). After a crash of the machine such a record may read as empty:
   * the container is then not listed (as `--rm` asked), but its directory stays in the store.
   */
  save(rec: ContainerRecord): void {
    writeJsonAtomic(path.join(this.dir(rec.id), 'record.json'), rec, { durable: !rec.autoRemove });
  }

  get(id: string): ContainerRecord | undefined {
    try {
      // Joined by hand: `ps` reads every record, and path.join would be a tenth of its time.
      return readJson(`${this.store.root}/containers/${id}/record.json`, isRecord);
    } catch {
      return undefined;
    }
  }

  /** The ids of the containers in the store (their directories), unread. */
  ids(): string[] {
    try {
      const names = fs.readdirSync(this.store.p('containers'));
      this.sweepAside(names);
      return names.filter((n) => /^[a-f0-9]{64}$/.test(n));
    } catch {
      return [];
    }
  }

  all(): ContainerRecord[] {
    return this.ids()
      .map((i) => this.get(i))
      .filter((r): r is ContainerRecord => !!r);
  }

  /** By full id, unique id prefix, or name — as Docker resolves container references. */
  find(ref: string): ContainerRecord {
    let id: string | undefined;
    try {
      id = fs.readlinkSync(this.namePath(ref.replace(/^\//, '')));
    } catch {
      /* not a name */
    }
    if (!id && /^[a-f0-9]{1,64}$/.test(ref)) {
      const ids = fs.existsSync(this.store.p('containers')) ? fs.readdirSync(this.store.p('containers')).filter((n) => n.startsWith(ref) && n.length === 64) : [];
      if (ids.length > 1) throw new BurrowError('EUSAGE', `multiple containers match the prefix ${ref}: be more specific`);
      id = ids[0];
    }
    const rec = id ? this.get(id) : undefined;
    if (!rec) throw new BurrowError('ECONTAINER_NOT_FOUND', `no such container: ${ref}`);
    return rec;
  }
}
