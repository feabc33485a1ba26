/**
 * Docker's container create body to the engine's CreateRequest (ts/api/convert/create.ts), the
 * restart policy syntax of the CLI, and the `ps` table of the top route.
 */
import { describe, expect, it } from 'vitest';
import { createRequestOf, updateRequestOf } from '../../ts/api/convert/create';
import { ApiError } from '../../ts/api/http';
import { psTable } from '../../ts/api/routes/containers';
import { toResources } from '../../ts/container/limits';
import { parseRestartPolicy } from '../../ts/engine/create';
import { filtersFromFlags } from '../../ts/engine/list';
import { parseMountFlag, toCreateRequest, type RunFlags } from '../../ts/cli/commands/run-flags';

/** What the docker CLI 20.10 sends for `docker create --name x busybox` (zero values included). */
const DOCKER_CLI_BODY = {
  Hostname: '',
  Domainname: '',
  User: '',
  AttachStdin: false,
  AttachStdout: true,
  AttachStderr: true,
  Tty: false,
  OpenStdin: false,
  StdinOnce: false,
  Env: null,
  Cmd: null,
  Image: 'busybox',
  Volumes: {},
  WorkingDir: '',
  Entrypoint: null,
  OnBuild: null,
  Labels: {},
  HostConfig: {
    Binds: null,
    ContainerIDFile: '',
    LogConfig: { Type: '', Config: {} },
    NetworkMode: 'default',
    PortBindings: {},
    RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
    AutoRemove: false,
    VolumeDriver: '',
    VolumesFrom: null,
    CapAdd: null,
    CapDrop: null,
    CgroupnsMode: '',
    Dns: [],
    DnsOptions: [],
    DnsSearch: [],
    ExtraHosts: null,
    GroupAdd: null,
    IpcMode: '',
    Cgroup: '',
    Links: null,
    OomScoreAdj: 0,
    PidMode: '',
    Privileged: false,
    PublishAllPorts: false,
    ReadonlyRootfs: false,
    SecurityOpt: null,
    UTSMode: '',
    UsernsMode: '',
    ShmSize: 0,
    ConsoleSize: [0, 0],
    Isolation: '',
    CpuShares: 0,
    Memory: 0,
    NanoCpus: 0,
    CgroupParent: '',
    BlkioWeight: 0,
    BlkioWeightDevice: [],
    BlkioDeviceReadBps: null,
    BlkioDeviceWriteBps: null,
    BlkioDeviceReadIOps: null,
    BlkioDeviceWriteIOps: null,
    CpuPeriod: 0,
    CpuQuota: 0,
    CpuRealtimePeriod: 0,
    CpuRealtimeRuntime: 0,
    CpusetCpus: '',
    CpusetMems: '',
    Devices: [],
    DeviceCgroupRules: null,
    DeviceRequests: null,
    KernelMemory: 0,
    KernelMemoryTCP: 0,
    MemoryReservation: 0,
    MemorySwap: 0,
    MemorySwappiness: null,
    OomKillDisable: false,
    PidsLimit: null,
    Ulimits: null,
    CpuCount: 0,
    CpuPercent: 0,
    IOMaximumIOps: 0,
    IOMaximumBandwidth: 0,
    MaskedPaths: null,
    ReadonlyPaths: null,
  },
  NetworkingConfig: { EndpointsConfig: {} },
};

function status(f: () => unknown): number {
  try {
    f();
  } catch (e) {
    if (e instanceof ApiError) return e.status;
    throw e;
  }
  return 0;
}

describe('Docker create body → CreateRequest', () => {
  it("reads the docker CLI's body with its zero values as a plain create: no limits, no restart policy, the default network", () => {
    const { request, warnings } = createRequestOf(DOCKER_CLI_BODY, 'x');
    expect(warnings).toEqual([]);
    expect(request).toMatchObject({ image: 'busybox', name: 'x', command: [], env: [], tty: false, interactive: false, stdinOnce: false, autoRemove: false, defaultLogDriver: 'json-file', pull: 'never', mounts: [], volumes: [], publish: [] });
    expect(request.network).toBeUndefined();
    expect(request.restartPolicy).toEqual({ name: 'no', maximumRetryCount: 0 });
    expect(request.entrypoint).toBeUndefined();
    expect(request.resources).toEqual({});
    expect(toResources(request.resources!).needs).toEqual([]);
  });

  it('translates every field the issue lists', () => {
    const { request } = createRequestOf(
      {
        Image: 'app:1',
        Hostname: 'h',
        User: 'app:app',
        Env: ['A=1'],
        Cmd: ['run', 'it'],
        Entrypoint: [''],
        WorkingDir: '/w',
        Tty: true,
        OpenStdin: true,
        StdinOnce: true,
        StopSignal: 'SIGQUIT',
        StopTimeout: 7,
        Labels: { a: 'b' },
        ExposedPorts: { '8080/tcp': {} },
        Healthcheck: { Test: ['CMD', 'true'], Interval: 1e9, Timeout: 2e9, StartPeriod: 0, Retries: 3 },
        Volumes: { '/anon': {}, '/bound': {} },
        HostConfig: {
          Binds: ['/host:/bound:ro'],
          Mounts: [{ Type: 'bind', Source: '/src', Target: '/dst', ReadOnly: true }, { Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 65536, Mode: 0o1777 } }],
          PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }], '53/udp': [{ HostIp: '', HostPort: '' }], '443/tcp': [{ HostIp: '::1', HostPort: '8443' }] },
          PublishAllPorts: true,
          RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 5 },
          AutoRemove: false,
          CapAdd: ['NET_ADMIN'],
          CapDrop: ['MKNOD'],
          SecurityOpt: ['no-new-privileges'],
          Privileged: true,
          ReadonlyRootfs: true,
          ExtraHosts: ['db:10.0.0.2'],
          Dns: ['1.1.1.1'],
          DnsSearch: ['example.com'],
          DnsOptions: ['ndots:2'],
          NetworkMode: 'host',
          Init: true,
          Tmpfs: { '/run': 'size=1m' },
          Devices: [{ PathOnHost: '/dev/fuse', PathInContainer: '', CgroupPermissions: 'rw' }],
          GroupAdd: ['audio'],
          Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 4096 }],
          Memory: 268435456,
          MemorySwap: -1,
          MemoryReservation: 1048576,
          NanoCpus: 1_500_000_000,
          CpuShares: 512,
          CpuQuota: 50000,
          CpuPeriod: 100000,
          CpusetCpus: '0-1',
          PidsLimit: 64,
          BlkioWeight: 300,
          OomKillDisable: true,
          LogConfig: { Type: 'json-file', Config: {} },
        },
      },
      undefined,
    );
    expect(request).toMatchObject({
      image: 'app:1',
      hostname: 'h',
      user: 'app:app',
      env: ['A=1'],
      command: ['run', 'it'],
      entrypoint: [],
      workdir: '/w',
      tty: true,
      interactive: true,
      stdinOnce: true,
      stopSignal: 'SIGQUIT',
      stopTimeout: 7,
      labels: { a: 'b' },
      expose: ['8080/tcp'],
      healthcheck: { Test: ['CMD', 'true'], Interval: 1e9, Timeout: 2e9, StartPeriod: 0, Retries: 3 },
      volumes: ['/host:/bound:ro'],
      mounts: [
        { type: 'bind', source: '/src', target: '/dst', readOnly: true },
        { type: 'tmpfs', target: '/t', tmpfsSize: 65536, tmpfsMode: 0o1777 },
        { type: 'volume', target: '/anon' },
      ],
      publish: ['127.0.0.1:8080:80/tcp', '53/udp', '[::1]:8443:443/tcp'],
      publishAll: true,
      restartPolicy: { name: 'on-failure', maximumRetryCount: 5 },
      capAdd: ['NET_ADMIN'],
      capDrop: ['MKNOD'],
      securityOpt: ['no-new-privileges'],
      privileged: true,
      readOnly: true,
      addHosts: ['db:10.0.0.2'],
      dns: ['1.1.1.1'],
      dnsSearch: ['example.com'],
      dnsOptions: ['ndots:2'],
      network: 'host',
      init: true,
      tmpfs: { '/run': 'size=1m' },
      devices: ['/dev/fuse:/dev/fuse:rw'],
      groupAdd: ['audio'],
      ulimits: ['nofile=1024:4096'],
      logDriver: 'json-file',
    });
    expect(request.mounts!.length).toBe(3);
    // The resources reach the OCI limits as the CLI's flags would.
    const r = toResources(request.resources!);
    expect(r.resources).toEqual({
      memory: { limit: 268435456, swap: -1, reservation: 1048576, disableOOMKiller: true },
      cpu: { period: 100000, quota: 50000, shares: 512, cpus: '0-1' },
      pids: { limit: 64 },
      blockIO: { weight: 300 },
    });
    expect(r.needs.sort()).toEqual(['cpu', 'cpuset', 'io', 'memory', 'pids']);
  });

  it('NanoCpus alone is a CFS quota over a 100 ms period', () => {
    const { request } = createRequestOf({ Image: 'i', HostConfig: { NanoCpus: 250_000_000 } }, undefined);
    expect(toResources(request.resources!).resources).toEqual({ cpu: { period: 100000, quota: 25000 } });
  });

  it("maps Docker's network modes; a user-defined network (NetworkMode or endpoints) with its EndpointsConfig, the mode's first", () => {
    const net = (mode: string | undefined, endpoints: object = {}, extra: object = {}) => createRequestOf({ Image: 'i', ...extra, HostConfig: mode === undefined ? {} : { NetworkMode: mode }, NetworkingConfig: { EndpointsConfig: endpoints } }, undefined);
    for (const m of ['default', 'bridge', '', undefined]) expect(net(m).request.network, String(m)).toBeUndefined();
    for (const m of ['host', 'none', 'container:abc', 'slirp4netns:mtu=1500', 'pasta']) expect(net(m).request.network).toBe(m);
    for (const m of ['default', 'host']) expect(net(m, { bridge: {}, default: {}, host: {} }).request.endpoints, m).toBeUndefined();
    // compose's body: the project network as the mode and its endpoint with the service's alias.
    const user = net('proj_default', { proj_default: { Aliases: ['web', 'web'], IPAMConfig: null, Links: null, MacAddress: '' } });
    expect(user.warnings).toEqual([]);
    expect(user.request).toMatchObject({ network: 'proj_default', endpoints: [{ network: 'proj_default', aliases: ['web'] }] });
    // Several endpoints (API 1.44, or 1.41 bodies that name more): the mode's first, then the body's order.
    const two = net('b', { a: { Aliases: ['x'] }, b: { IPAMConfig: { IPv4Address: '10.1.0.5', IPv6Address: '' }, MacAddress: '02:42:0A:01:00:05' } });
    expect(two.request.network).toBe('b');
    expect(two.request.endpoints).toEqual([
      { network: 'b', aliases: [], ip: '10.1.0.5', mac: '02:42:0a:01:00:05' },
      { network: 'a', aliases: ['x'] },
    ]);
    // The default mode with user-defined endpoints: those networks.
    expect(net('default', { proj_back: {} }).request).toMatchObject({ network: 'proj_back', endpoints: [{ network: 'proj_back', aliases: [] }] });
    // Config.MacAddress (API < 1.44) is the first network's.
    expect(net('n', {}, { MacAddress: '02:42:0a:00:00:09' }).request.endpoints).toEqual([{ network: 'n', aliases: [], mac: '02:42:0a:00:00:09' }]);
    // Bad addresses are 400s naming them.
    for (const [ep, msg] of [
      [{ IPAMConfig: { IPv4Address: '10.1.0.300' } }, /invalid IPv4 address: 10\.1\.0\.300/],
      [{ IPAMConfig: { IPv6Address: 'fd00::5' } }, /IPv6Address: a fixed IPv6 address is not supported/],
      [{ MacAddress: 'zz' }, /invalid MAC address: zz/],
      [{ Aliases: 'web' }, /NetworkingConfig\.EndpointsConfig\.n\.Aliases/],
    ] as const) {
      let err: unknown;
      try {
        net('n', { n: ep });
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(ep)).toBeInstanceOf(ApiError);
      expect((err as ApiError).status).toBe(400);
      expect((err as ApiError).message).toMatch(msg);
    }
    const disabled = createRequestOf({ Image: 'i', NetworkDisabled: true, HostConfig: { NetworkMode: 'n' } }, undefined).request;
    expect(disabled.network).toBe('none');
    expect(disabled.endpoints).toBeUndefined();
  });

  it('Cmd and Entrypoint as a string (Docker\'s StrSlice); null Entrypoint keeps the image\'s', () => {
    expect(createRequestOf({ Image: 'i', Cmd: 'echo hi', Entrypoint: '/bin/sh' }, undefined).request).toMatchObject({ command: ['echo hi'], entrypoint: ['/bin/sh'] });
    expect(createRequestOf({ Image: 'i', Entrypoint: null }, undefined).request.entrypoint).toBeUndefined();
    expect(createRequestOf({ Image: 'i', Entrypoint: [] }, undefined).request.entrypoint).toEqual([]);
  });

  it('refuses wrong types with a 400 naming the field, and ignores unknown fields', () => {
    const cases: [object, RegExp][] = [
      [{ Image: 'i', Env: 'A=1' }, /invalid type for Env: want an array of strings, got string/],
      [{ Image: 'i', Tty: 'yes' }, /invalid type for Tty: want a boolean/],
      [{ Image: 'i', StopTimeout: 1.5 }, /invalid type for StopTimeout: want an integer/],
      [{ Image: 'i', Labels: { a: 1 } }, /invalid type for Labels: want an object of strings/],
      [{ Image: 'i', HostConfig: { Memory: '1g' } }, /HostConfig\.Memory: want an integer, got string/],
      [{ Image: 'i', HostConfig: { PortBindings: { '80/tcp': [{ HostPort: 80 }] } } }, /HostConfig\.PortBindings\.80\/tcp\[0\]\.HostPort/],
      [{ Image: 'i', HostConfig: { Mounts: [{ Type: 'npipe', Target: '/x' }] } }, /mount type "npipe" is not supported/],
      [{ Image: 'i', HostConfig: { Mounts: [{ Type: 'bind', Target: '/x' }] } }, /field Source must not be empty/],
      [{ Image: 'i', HostConfig: { RestartPolicy: { Name: 'sometimes' } } }, /invalid restart policy 'sometimes'/],
      [{ Image: 'i', HostConfig: { RestartPolicy: { Name: 'always', MaximumRetryCount: 2 } } }, /only be used with 'on-failure'/],
      [{ Image: 'i', HostConfig: 'x' }, /invalid type for HostConfig: want an object/],
      [{ Cmd: ['x'] }, /Image is required/],
      [[1], /must be a JSON object/],
    ];
    for (const [body, re] of cases) {
      let msg = '';
      try {
        createRequestOf(body, undefined);
      } catch (e) {
        expect(e).toBeInstanceOf(ApiError);
        expect((e as ApiError).status).toBe(400);
        msg = (e as Error).message;
      }
      expect(msg, JSON.stringify(body)).toMatch(re);
    }
    expect(status(() => createRequestOf({ Image: 'i', Whatever: { deep: [1] }, HostConfig: { Future: 1 } }, undefined))).toBe(0);
  });

  it('an update body: resources and the restart policy', () => {
    expect(updateRequestOf({ Memory: 1048576, RestartPolicy: { Name: 'unless-stopped' } })).toEqual({ resources: { memory: '1048576' }, restartPolicy: { name: 'unless-stopped', maximumRetryCount: 0 } });
    expect(status(() => updateRequestOf({ PidsLimit: 'x' }))).toBe(400);
  });
});

describe('CLI syntax → CreateRequest', () => {
  it('--restart as Docker spells it', () => {
    expect(parseRestartPolicy('no')).toEqual({ name: 'no', maximumRetryCount: 0 });
    expect(parseRestartPolicy('on-failure')).toEqual({ name: 'on-failure', maximumRetryCount: 0 });
    expect(parseRestartPolicy('on-failure:3')).toEqual({ name: 'on-failure', maximumRetryCount: 3 });
    expect(parseRestartPolicy('always')).toEqual({ name: 'always', maximumRetryCount: 0 });
    expect(parseRestartPolicy('unless-stopped')).toEqual({ name: 'unless-stopped', maximumRetryCount: 0 });
    for (const bad of ['sometimes', 'always:3', 'on-failure:x', '']) expect(() => parseRestartPolicy(bad), bad).toThrow(/invalid restart policy/);
  });

  it('--mount, --tmpfs, -l and --entrypoint become typed fields', () => {
    expect(parseMountFlag('type=bind,source=/a,target=/b,readonly')).toEqual({ type: 'bind', source: '/a', target: '/b', readOnly: true });
    expect(parseMountFlag('type=volume,target=/v')).toEqual({ type: 'volume', target: '/v' });
    expect(parseMountFlag('type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1777')).toEqual({ type: 'tmpfs', target: '/t', tmpfsSize: '64m', tmpfsMode: '1777' });
    expect(() => parseMountFlag('type=bind,source=/a')).toThrow(/a target is required/);
    expect(() => parseMountFlag('type=npipe,target=/a')).toThrow(/not supported/);
    const flags: RunFlags = { env: [], envFile: [], volume: [], mount: [], tmpfs: ['/run:size=1m', '/x'], capAdd: [], capDrop: [], securityOpt: [], ulimit: [], label: ['a=b', 'c'], pull: 'missing', groupAdd: [], device: [], publish: [], network: [], networkAlias: [], expose: [], dns: [], dnsSearch: [], dnsOption: [], addHost: [], entrypoint: '', restart: 'always', memory: '32m' };
    expect(toCreateRequest('img', ['x'], flags)).toMatchObject({ image: 'img', command: ['x'], entrypoint: [], tmpfs: { '/run': 'size=1m', '/x': '' }, labels: { a: 'b', c: '' }, restartPolicy: { name: 'always', maximumRetryCount: 0 }, resources: { memory: '32m' } });
  });

  it('-f key=value filters as Docker\'s map (values of one key together)', () => {
    expect(filtersFromFlags(['label=a', 'label=b=c', 'status=exited'])).toEqual({ label: ['a', 'b=c'], status: ['exited'] });
    expect(() => filtersFromFlags(['nonsense'])).toThrow(/invalid filter/);
  });
});

describe('top', () => {
  it("splits ps output into Docker's Titles and Processes, the command whole", () => {
    const t = psTable('UID          PID    PPID  C STIME TTY          TIME CMD\nroot        4242    4200  0 20:01 ?        00:00:00 sleep 300 --flag\n');
    expect(t.Titles).toEqual(['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']);
    expect(t.Processes).toEqual([['root', '4242', '4200', '0', '20:01', '?', '00:00:00', 'sleep 300 --flag']]);
  });
});
