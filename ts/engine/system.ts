/**
 * The engine's system view, shared by the API (`/info`, `/events`, `/system/df`) and any front
 * end that wants it: Docker's `info` built from the host probe (run once per engine context,
 * since it forks the runtime and tests the storage driver) and the store's counts (read each
 * time: they change), the events stream with Docker's filters and since/until, and disk use.
 */
import fs from 'node:fs';
import os from 'node:os';
import { BurrowError } from '../errors';
import type { HostReport } from '../host/report';
import type { EngineContext } from './context';
import { EventLog, eventMatches, type RecordedEvent } from './events';

const reports = new WeakMap<EngineContext, Promise<HostReport>>();

/** The host probe for this context's store, once: `info` must not fork a probe per request. */
export function hostReport(ctx: EngineContext): Promise<HostReport> {
  let r = reports.get(ctx);
  if (!r) {
    r = (async () => {
      const { probeHost } = await import('../host/probe');
      const { layoutOf } = await import('../storage/settings');
      let saved;
      try {
        saved = ctx.store.settings();
      } catch {
        saved = undefined;
      }
      const layout = layoutOf(ctx.store.root, saved, process.getuid?.() ?? 0);
      return probeHost(ctx.globals, layout.kind === 'redirect' ? layout.local : undefined);
    })();
    reports.set(ctx, r);
    r.catch(() => reports.delete(ctx)); // a failed probe is tried again on the next request
  }
  return r;
}

function osRelease(): { name: string; version: string } {
  try {
    const t = fs.readFileSync('/etc/os-release', 'utf8');
    const get = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(t)?.[1];
    return { name: get('PRETTY_NAME') ?? get('NAME') ?? 'Linux', version: get('VERSION_ID') ?? '' };
  } catch {
    return { name: 'Linux', version: '' };
  }
}

/** Counts of containers by state, as `info` shows them. */
export async function containerCounts(ctx: EngineContext): Promise<{ total: number; running: number; paused: number; stopped: number }> {
  const { Containers } = await import('../container/records');
  const { containerState } = await import('../container/state');
  const cs = new Containers(ctx.store);
  let running = 0;
  let paused = 0;
  let stopped = 0;
  const all = cs.all();
  for (const rec of all) {
    const s: string = containerState(rec, cs.dir(rec.id)).status;
    if (s === 'running') running++;
    else if (s === 'paused') paused++;
    else stopped++;
  }
  return { total: all.length, running, paused, stopped };
}

/** A stable id for this engine (Docker shows a UUID-like ID per daemon): from the host and the store. */
async function engineId(ctx: EngineContext): Promise<string> {
  const { createHash } = await import('node:crypto');
  const h = createHash('sha256').update(`${os.hostname()}\0${ctx.store.root}`).digest('hex').toUpperCase();
  return Array.from({ length: 12 }, (_, i) => h.slice(i * 4, i * 4 + 4)).join(':');
}

/** Docker's `GET /info` body (the fields the docker CLI's `info` and docker-py read). */
export async function engineInfo(ctx: EngineContext): Promise<Record<string, unknown>> {
  const [report, counts, id] = await Promise.all([hostReport(ctx), containerCounts(ctx), engineId(ctx)]);
  const { VERSION } = await import('../version');
  const settings = ctx.store.settings();
  const cg = report.cgroups;
  const can = (c: string) => cg.enforceable.includes(c);
  const rel = osRelease();
  const warnings = report.checks.filter((c) => c.verdict === 'warn' || c.verdict === 'fail').map((c) => `WARNING: ${c.title}: ${c.evidence}`);
  const security = ['name=seccomp,profile=default', ...(report.rootless ? ['name=rootless'] : []), ...(cg.mode === 'unified' ? ['name=cgroupns'] : [])];
  const runtimePath = report.runtimeBinary.path ?? '';
  const images = ctx.store.images().length;
  const { imageFormat, describeImageFormat } = await import('../storage/image-format');
  return {
    ID: id,
    Containers: counts.total,
    ContainersRunning: counts.running,
    ContainersPaused: counts.paused,
    ContainersStopped: counts.stopped,
    Images: images,
    Driver: settings?.driver ?? report.storage.driver,
    DriverStatus: [
      ['Backing Filesystem', report.storage.fsType],
      ['Id Mapping', settings?.idMode ?? report.idmap.mode],
      ['Driver Reason', report.storage.reason],
      // Whether `run` starts from the store's squashfs of each image or from its layers.
      ['Image Format', describeImageFormat(imageFormat(ctx.store))],
    ],
    Plugins: { Volume: ['local'], Network: ['bridge', 'host', 'none'], Authorization: null, Log: ['k8s-file', 'json-file', 'none'] },
    MemoryLimit: can('memory'),
    SwapLimit: can('memory'),
    KernelMemory: false,
    KernelMemoryTCP: false,
    CpuCfsPeriod: can('cpu'),
    CpuCfsQuota: can('cpu'),
    CPUShares: can('cpu'),
    CPUSet: can('cpuset'),
    PidsLimit: can('pids'),
    IPv4Forwarding: true,
    BridgeNfIptables: false,
    BridgeNfIp6tables: false,
    Debug: !!process.env.BURROW_DEBUG,
    NFd: countFds(),
    OomKillDisable: can('memory'),
    NGoroutines: 0,
    SystemTime: new Date().toISOString(),
    LoggingDriver: 'k8s-file',
    CgroupDriver: cg.manager === 'systemd' ? 'systemd' : cg.manager === 'cgroupfs' ? 'cgroupfs' : 'none',
    CgroupVersion: cg.mode === 'unified' ? '2' : '1',
    NEventsListener: eventListeners,
    KernelVersion: os.release(),
    OperatingSystem: rel.name,
    OSVersion: rel.version,
    OSType: 'linux',
    Architecture: os.machine(),
    IndexServerAddress: 'https://index.docker.io/v1/',
    RegistryConfig: { AllowNondistributableArtifactsCIDRs: [], AllowNondistributableArtifactsHostnames: [], InsecureRegistryCIDRs: [], IndexConfigs: {}, Mirrors: [] },
    NCPU: os.availableParallelism(),
    MemTotal: os.totalmem(),
    GenericResources: null,
    DockerRootDir: ctx.store.root,
    HttpProxy: process.env.HTTP_PROXY ?? process.env.http_proxy ?? '',
    HttpsProxy: process.env.HTTPS_PROXY ?? process.env.https_proxy ?? '',
    NoProxy: process.env.NO_PROXY ?? process.env.no_proxy ?? '',
    Name: os.hostname(),
    Labels: [],
    ExperimentalBuild: false,
    ServerVersion: VERSION,
    Runtimes: { 'burrow-runtime': { path: runtimePath } },
    DefaultRuntime: 'burrow-runtime',
    Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
    // Containers outlive the service (each is under its monitor), which is what live restore means.
    LiveRestoreEnabled: true,
    Isolation: '',
    InitBinary: 'tini-static',
    ContainerdCommit: { ID: '', Expected: '' },
    RuncCommit: { ID: '', Expected: '' },
    InitCommit: { ID: '', Expected: '' },
    SecurityOptions: security,
    CDISpecDirs: [],
    Warnings: warnings,
    // burrow's own view, for tools that want more than Docker's fields.
    Burrow: { RunRoot: ctx.runRoot, Rootless: report.rootless, IdMapping: settings?.idMode ?? report.idmap.mode, Network: report.network.defaultMode, CanRunContainers: report.canRunContainers },
  };
}

function countFds(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

/** Event streams following new events in this process (info's NEventsListener). */
let eventListeners = 0;

export interface EventQuery {
  /** Nanoseconds; past events from then on are sent first. */
  since?: number;
  /** Nanoseconds; the stream ends there (at once when it is past). */
  until?: number;
  filters: Record<string, string[]>;
}

/**
 * Container events as Docker sends them carry the container's name and image (and labels); an
 * event that lacks them (the monitor's `die`) gets them from an earlier event of the stream or
 * from the container's record.
 */
export class EventEnricher {
  private readonly known = new Map<string, Record<string, string>>();
  private containers: import('../container/records').Containers | undefined;

  constructor(private readonly ctx: EngineContext) {}

  async fill(e: RecordedEvent): Promise<RecordedEvent> {
    if (e.Type !== 'container') return e;
    const a = e.Actor.Attributes;
    if (a.name !== undefined && a.image !== undefined) {
      if (!this.known.has(e.Actor.ID)) this.known.set(e.Actor.ID, a);
      return e;
    }
    let base = this.known.get(e.Actor.ID);
    if (!base) {
      const { Containers } = await import('../container/records');
      this.containers ??= new Containers(this.ctx.store);
      const rec = this.containers.get(e.Actor.ID);
      if (rec) base = { ...rec.labels, image: rec.imageName, name: rec.name };
      if (base) this.known.set(e.Actor.ID, base);
    }
    return base ? { ...e, Actor: { ID: e.Actor.ID, Attributes: { ...base, ...a } } } : e;
  }
}

/**
 * Docker's events: past ones in [since, until] first (only when either is given, as Docker),
 * then, unless `until` is past, new ones as they come until `until` or `signal`. Resolves when
 * the stream is over.
 */
export async function streamEvents(ctx: EngineContext, q: EventQuery, onEvent: (e: RecordedEvent) => void, signal: AbortSignal): Promise<void> {
  if (q.since !== undefined && q.until !== undefined && q.until < q.since) throw new BurrowError('EUSAGE', 'since must be before until');
  const enricher = new EventEnricher(ctx);
  const log = new EventLog(ctx);
  const inRange = (e: RecordedEvent) => (q.since === undefined || e.timeNano >= q.since) && (q.until === undefined || e.timeNano <= q.until);
  // Events are handed on in order: enrichment may wait for a record read.
  let chain = Promise.resolve();
  const send = (e: RecordedEvent) => {
    chain = chain.then(async () => {
      if (signal.aborted || !inRange(e)) return;
      const full = await enricher.fill(e);
      if (eventMatches(q.filters, full)) onEvent(full);
    });
  };
  try {
    // Docker sends past events only when asked for a range.
    if (q.since !== undefined || q.until !== undefined) for (const e of log.history()) send(e);
    else log.skipHistory();
    await chain;
    const now = Date.now() * 1e6;
    if ((q.until !== undefined && q.until <= now) || signal.aborted) return;
    eventListeners++;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        eventListeners--;
        resolve();
      };
      const timer = q.until !== undefined ? setTimeout(done, Math.max(0, (q.until - Date.now() * 1e6) / 1e6)) : undefined;
      signal.addEventListener('abort', done);
      log.follow(send);
    });
    await chain;
  } finally {
    log.close();
  }
}

/** Docker's `GET /system/df` body from the store's disk use (storage/df.ts). */
export async function diskUsageReport(ctx: EngineContext): Promise<Record<string, unknown>> {
  const { diskUsage } = await import('../storage/df');
  const { listVolumes } = await import('../storage/volumes');
  const { Containers } = await import('../container/records');
  const u = diskUsage(ctx.store);
  const secs = (iso: string | undefined) => (iso ? Math.floor(Date.parse(iso) / 1000) || 0 : 0);
  const cs = new Containers(ctx.store);
  const vols = new Map(listVolumes(ctx.store).map((v) => [v.Name, v]));
  return {
    LayersSize: u.images.size,
    Images: u.images.items.map((i) => ({
      Id: i.id.startsWith('sha256:') ? i.id : `sha256:${i.id}`,
      ParentId: '',
      RepoTags: i.repoTags.map((t) => t.replace(/^docker\.io\/(library\/)?/, '')),
      RepoDigests: i.repoDigests,
      Created: secs(i.created),
      Size: i.size,
      SharedSize: i.sharedSize,
      VirtualSize: i.size,
      Labels: {},
      Containers: i.containers,
    })),
    Containers: u.containers.items.map((c) => {
      const rec = cs.get(c.id);
      return {
        Id: c.id,
        Names: [`/${c.name}`],
        Image: c.image,
        ImageID: rec?.image ?? '',
        Command: c.command.join(' '),
        Created: secs(c.created),
        Ports: [],
        SizeRw: c.size,
        SizeRootFs: c.size,
        Labels: rec?.labels ?? {},
        State: c.status,
        Status: c.status === 'running' ? 'Up' : c.status === 'created' ? 'Created' : 'Exited',
        HostConfig: { NetworkMode: rec?.network ?? 'default' },
        NetworkSettings: { Networks: {} },
        Mounts: [],
      };
    }),
    Volumes: u.volumes.items.map((v) => ({ ...(vols.get(v.name) ?? { Name: v.name }), UsageData: { Size: v.size, RefCount: v.links } })),
    BuildCache: [],
  };
}
