/**
 * User-defined networks (#16) through the Engine API, with the real clients: Docker's statuses
 * on the raw API (create 201/409/403/400, remove 204/403/404), the docker 20.10 CLI (`network
 * create/ls/inspect/rm/prune/connect/disconnect`, `run --network --network-alias --ip`, `ps`'s
 * NETWORKS, inspect's NetworkSettings.Networks), docker-py (networks.create/get/list/remove,
 * containers.run(network=...)) and docker-compose 1.29 (a project's default network, created by
 * compose: a client service reaches the web service by its service name; `down` removes the
 * network). BURROW_API_PEER=podman runs the same against `podman system service`, as the
 * unprivileged user only (rootful podman would put its bridges and firewall rules on the host);
 * podman 4.3's rootless name resolution there is unreliable past the first tests (names it
 * resolved stop resolving after a disconnect), which these tests do not work around.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT } from './helpers';
import { request } from './api.helpers';
import { checks, PEER, PODMAN_DEVIATIONS as DEV, show, startApi, type ApiPeer, type Result } from './api-clients.helpers';
import { composeBin, dockerPyPython, run } from '../harness/docker-clients.mjs';

let api: ApiPeer;

beforeAll(async () => {
  api = await startApi('api-networks');
}, 180_000);

afterAll(async () => {
  if (api) {
    // Containers first (a network in use cannot go), then the networks.
    const ids = (await api.docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await api.docker(['rm', '-f', ...ids]);
    await api.docker(['network', 'prune', '-f']);
  }
  await api?.dispose();
}, 180_000);

const d = (args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<Result> => api.docker(args, opts);

async function ok(args: string[]): Promise<string> {
  const r = await d(args);
  expect(r.code, `docker ${args.join(' ')}\n${show(r)}\nservice: ${api.log().slice(-2000)}`).toBe(0);
  return r.stdout;
}

const raw = (method: string, p: string, body?: unknown) => request(api.sock, method, p, body);

/** Serves "NAME" at http://CONTAINER/ (busybox httpd in the foreground). */
const httpd = (text: string): string[] => ['sh', '-c', `mkdir -p /www && echo ${text} > /www/index.html && exec httpd -f -p 80 -h /www`];

/**
 * A container on `net` that fetches http://HOST/, retrying while the server comes up (a bounded
 * number of tries, a safety limit, not a timed assertion); its output and exit status. (Never
 * `wget -T`: Debian's busybox-static 1.35 wget dies of SIGSEGV on a failed fetch with it.)
 */
function fetchArgs(net: string, host: string, extra: string[] = []): string[] {
  return ['run', '--rm', '--network', net, ...extra, api.image, 'sh', '-c', `for i in $(seq 60); do wget -q -O- http://${host}/ && exit 0; sleep 0.5; done; exit 1`];
}

interface Net {
  Name: string;
  Id: string;
  Driver: string;
  Scope: string;
  Internal: boolean;
  IPAM: { Driver: string; Config: { Subnet?: string; Gateway?: string }[] };
  Labels: Record<string, string>;
  Containers: Record<string, { Name: string; IPv4Address: string; MacAddress: string; EndpointID: string }>;
}

interface Endpoint {
  IPAMConfig: { IPv4Address: string } | null;
  Aliases: string[] | null;
  NetworkID: string;
  EndpointID: string;
  Gateway: string;
  IPAddress: string;
  IPPrefixLen: number;
  MacAddress: string;
}

describe(`networks through ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it("raw API: Docker's statuses for create (201, 409, 403 overlap, 400), inspect and remove (204, 404)", async () => {
    const c = await raw('POST', '/v1.41/networks/create', { Name: 'raw-a', CheckDuplicate: true, Driver: 'bridge', IPAM: { Driver: 'default', Config: [{ Subnet: '10.231.1.0/24', Gateway: '10.231.1.1' }] }, Labels: { l: 'v' } });
    expect(c.status, c.text).toBe(201);
    const { Id } = c.json<{ Id: string }>();
    expect(Id).toMatch(/^[0-9a-f]{64}$/);
    const dup = await raw('POST', '/networks/create', { Name: 'raw-a', CheckDuplicate: true });
    if (checks(DEV.networkCreateStatuses)) expect(dup.status, dup.text).toBe(409);
    expect(dup.json<{ message: string }>().message).toMatch(/already (exists|used)/);
    // A subnet inside another network's.
    const ov = await raw('POST', '/networks/create', { Name: 'raw-ov', IPAM: { Config: [{ Subnet: '10.231.1.128/25' }] } });
    if (checks(DEV.networkCreateStatuses)) expect(ov.status, ov.text).toBe(403);
    else expect(ov.status, ov.text).toBeGreaterThanOrEqual(400);
    expect(ov.json<{ message: string }>().message).toMatch(/overlap|already (in use|used)/i);
    for (const bad of [{ Subnet: '10.231.300.0/24' }, { Subnet: '10.231.2.0/24', Gateway: 'not-an-ip' }, { Gateway: '10.231.3.1' }]) {
      const r = await raw('POST', '/networks/create', { Name: 'raw-bad', IPAM: { Config: [bad] } });
      if (checks(DEV.networkCreateStatuses)) expect(r.status, `${JSON.stringify(bad)}: ${r.text}`).toBe(400);
      else expect(r.status, `${JSON.stringify(bad)}: ${r.text}`).toBeGreaterThanOrEqual(400);
    }
    // Nothing half-made by the refusals.
    expect((await raw('GET', '/networks/raw-ov')).status).toBe(404);
    expect((await raw('GET', '/networks/raw-bad')).status).toBe(404);
    const ins = (await raw('GET', `/v1.41/networks/${Id.slice(0, 12)}`)).json<Net>();
    expect(ins).toMatchObject({ Name: 'raw-a', Id, Driver: 'bridge', Scope: 'local', Internal: false, Labels: { l: 'v' }, Containers: {} });
    expect(ins.IPAM.Config).toEqual([expect.objectContaining({ Subnet: '10.231.1.0/24', Gateway: '10.231.1.1' })]);
    // Without IPAM a subnet is chosen, one that overlaps nothing.
    const auto = await raw('POST', '/networks/create', { Name: 'raw-auto' });
    expect(auto.status, auto.text).toBe(201);
    const autoNet = (await raw('GET', '/networks/raw-auto')).json<Net>();
    expect(autoNet.IPAM.Config[0]?.Subnet).toMatch(/^\d+\.\d+\.\d+\.\d+\/\d+$/);
    expect(autoNet.IPAM.Config[0]?.Subnet).not.toBe('10.231.1.0/24');
    expect((await raw('DELETE', `/networks/${Id}`)).status).toBe(204);
    expect((await raw('DELETE', '/networks/raw-auto')).status).toBe(204);
    const gone = await raw('DELETE', '/networks/raw-a');
    expect(gone.status).toBe(404);
    expect((await raw('GET', '/networks/raw-a')).status).toBe(404);
  }, 240_000);

  it('docker network create/ls/inspect, and containers find each other by name and by alias', async () => {
    const id = (await ok(['network', 'create', '--subnet', '10.231.10.0/24', '--gateway', '10.231.10.1', '--label', 'proj=cli', 'clinet'])).trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const dup = await d(['network', 'create', 'clinet']);
    expect(dup.code, show(dup)).toBe(1);
    expect(dup.stderr).toMatch(/already exists/);
    const ls = await ok(['network', 'ls', '--filter', 'label=proj=cli', '--format', '{{.Name}} {{.Driver}} {{.Scope}}']);
    expect(ls.trim()).toBe('clinet bridge local');
    const [net] = JSON.parse(await ok(['network', 'inspect', 'clinet'])) as Net[];
    expect(net).toMatchObject({ Name: 'clinet', Id: id, Driver: 'bridge', Labels: { proj: 'cli' } });
    expect(net!.IPAM.Config).toEqual([expect.objectContaining({ Subnet: '10.231.10.0/24', Gateway: '10.231.10.1' })]);

    const webId = (await ok(['run', '-d', '--name', 'cli-web', '--network', 'clinet', '--network-alias', 'www', api.image, ...httpd('from-cli-web')])).trim();
    const byName = await d(fetchArgs('clinet', 'cli-web'));
    expect(byName.code, show(byName)).toBe(0);
    expect(byName.stdout).toBe('from-cli-web\n');
    const byAlias = await d(fetchArgs('clinet', 'www'));
    expect(byAlias.code, show(byAlias)).toBe(0);
    expect(byAlias.stdout).toBe('from-cli-web\n');

    // inspect: Docker's endpoint on the network; docker network inspect: the container with its address.
    const eps = JSON.parse(await ok(['inspect', '--format', '{{json .NetworkSettings.Networks}}', 'cli-web'])) as Record<string, Endpoint>;
    expect(Object.keys(eps)).toEqual(['clinet']);
    const ep = eps.clinet!;
    expect(ep).toMatchObject({ Gateway: '10.231.10.1', IPPrefixLen: 24 });
    if (checks(DEV.endpointIds)) expect(ep.NetworkID).toBe(id);
    expect(ep.IPAddress).toMatch(/^10\.231\.10\.\d+$/);
    if (checks(DEV.endpointMac)) expect(ep.MacAddress).toBe(`02:42:${ep.IPAddress.split('.').map((b) => Number(b).toString(16).padStart(2, '0')).join(':')}`);
    expect(ep.Aliases).toEqual(expect.arrayContaining([webId.slice(0, 12), 'www']));
    if (checks(DEV.endpointIds)) expect(ep.EndpointID).toMatch(/^[0-9a-f]{64}$/);
    expect((await ok(['inspect', '--format', '{{.HostConfig.NetworkMode}}', 'cli-web'])).trim()).toBe('clinet');
    const [withWeb] = JSON.parse(await ok(['network', 'inspect', 'clinet'])) as Net[];
    expect(withWeb!.Containers[webId]).toMatchObject({ Name: 'cli-web', IPv4Address: `${ep.IPAddress}/24`, MacAddress: ep.MacAddress });
    // docker ps's NETWORKS column.
    expect((await ok(['ps', '--filter', 'name=cli-web', '--format', '{{.Names}} {{.Networks}}'])).trim()).toBe('cli-web clinet');

    // --ip: the address asked for, kept in IPAMConfig; a taken one is refused.
    await ok(['run', '-d', '--name', 'cli-fixed', '--network', 'clinet', '--ip', '10.231.10.50', api.image, 'sleep', '1000']);
    const fixed = JSON.parse(await ok(['inspect', '--format', '{{json .NetworkSettings.Networks.clinet}}', 'cli-fixed'])) as Endpoint;
    expect(fixed).toMatchObject({ IPAddress: '10.231.10.50', IPAMConfig: { IPv4Address: '10.231.10.50' } });
    const taken = await d(['run', '--rm', '--network', 'clinet', '--ip', '10.231.10.50', api.image, 'true']);
    expect(taken.code, show(taken)).not.toBe(0);
    expect(taken.stderr).toMatch(/10\.231\.10\.50/);
    await ok(['rm', '-f', 'cli-fixed']);
  }, 240_000);

  it("docker network rm of a network in use: Docker's error; of one that does not exist: not found", async () => {
    const r = await d(['network', 'rm', 'clinet']);
    expect(r.code, show(r)).toBe(1);
    // Docker's words: 20.10's (`network NAME id ID has active endpoints`) or 25's (`network NAME has
    // active endpoints (name:"C" id:"SHORT")`).
    if (checks(DEV.networkRmInUseWords)) expect(r.stderr).toMatch(/error while removing network: network clinet (id [0-9a-f]{64} has active endpoints|has active endpoints \(name:"cli-web" id:"[0-9a-f]{12}"\))/);
    expect((await ok(['network', 'ls', '--format', '{{.Name}}'])).split('\n')).toContain('clinet');
    const nf = await d(['network', 'rm', 'no-such-net']);
    expect(nf.code, show(nf)).toBe(1);
    expect(nf.stderr).toMatch(/no-such-net.*not found|No such network: no-such-net/);
  }, 240_000);

  it('docker network connect --alias / disconnect of a running container', async () => {
    await ok(['network', 'create', '--subnet', '10.231.11.0/24', 'clinet2']);
    // On clinet2 only: cli-web is neither reachable nor known.
    const before = await d(['run', '--rm', '--network', 'clinet2', api.image, 'sh', '-c', 'wget -q -O- http://cli-web/']);
    if (checks(DEV.runRmExitStatus)) expect(before.code, show(before)).not.toBe(0);
    expect(before.stdout).toBe('');
    expect(before.stderr).toMatch(/bad address 'cli-web'/);
    await ok(['network', 'connect', '--alias', 'web2', 'clinet2', 'cli-web']);
    const eps = JSON.parse(await ok(['inspect', '--format', '{{json .NetworkSettings.Networks}}', 'cli-web'])) as Record<string, Endpoint>;
    expect(Object.keys(eps).sort()).toEqual(['clinet', 'clinet2']);
    expect(eps.clinet2!.IPAddress).toMatch(/^10\.231\.11\.\d+$/);
    expect(eps.clinet2!.Aliases).toContain('web2');
    expect((await ok(['ps', '--filter', 'name=cli-web', '--format', '{{.Networks}}'])).trim().split(',').sort()).toEqual(['clinet', 'clinet2']);
    const viaAlias = await d(fetchArgs('clinet2', 'web2'));
    expect(viaAlias.code, show(viaAlias)).toBe(0);
    expect(viaAlias.stdout).toBe('from-cli-web\n');
    await ok(['network', 'disconnect', 'clinet2', 'cli-web']);
    expect(Object.keys(JSON.parse(await ok(['inspect', '--format', '{{json .NetworkSettings.Networks}}', 'cli-web'])) as object)).toEqual(['clinet']);
    const after = await d(['run', '--rm', '--network', 'clinet2', api.image, 'sh', '-c', 'wget -q -O- http://web2/']);
    if (checks(DEV.runRmExitStatus)) expect(after.code, show(after)).not.toBe(0);
    expect(after.stdout).toBe('');
    expect(after.stderr).toMatch(/bad address 'web2'/);
    // Still there on its first network.
    const still = await d(fetchArgs('clinet', 'cli-web'));
    expect(still.code, show(still)).toBe(0);
    expect(still.stdout).toBe('from-cli-web\n');
  }, 240_000);

  it("docker network create --ipv6: EnableIPv6 and both IPAM configs; a container's endpoint shows its IPv6 address, prefix length and the IPv6 gateway", async () => {
    await ok(['network', 'create', '--ipv6', 'cliv6']);
    const [net] = JSON.parse(await ok(['network', 'inspect', 'cliv6'])) as (Net & { EnableIPv6: boolean })[];
    expect(net!.EnableIPv6).toBe(true);
    const v6 = net!.IPAM.Config.find((c) => c.Subnet?.includes(':'));
    expect(net!.IPAM.Config.find((c) => c.Subnet && !c.Subnet.includes(':'))?.Gateway).toMatch(/^[\d.]+$/);
    expect(v6?.Subnet).toMatch(/^[0-9a-f:]+\/64$/);
    expect(v6?.Gateway).toMatch(/^[0-9a-f:]+$/);
    const id = (await ok(['run', '-d', '--name', 'cli-v6', '--network', 'cliv6', api.image, 'sleep', '1000'])).trim();
    // What scripts ask docker for: the gateway, and the address with its prefix length.
    const out = await ok(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPv6Gateway}} {{.GlobalIPv6Address}} {{.GlobalIPv6PrefixLen}}{{end}}', 'cli-v6']);
    const [gw, ip6, len] = out.replace(/\n$/, '').split(' ');
    expect(gw).toBe(v6!.Gateway);
    expect(ip6).toMatch(/^[0-9a-f:]+$/);
    expect(ip6!.startsWith(v6!.Subnet!.replace(/::\/64$/, ':'))).toBe(true);
    expect(len).toBe('64');
    const [withIt] = JSON.parse(await ok(['network', 'inspect', 'cliv6'])) as (Net & { Containers: Record<string, { IPv6Address: string }> })[];
    expect(withIt!.Containers[id]).toMatchObject({ Name: 'cli-v6', IPv6Address: `${ip6}/64` });
    await ok(['rm', '-f', 'cli-v6']);
    await ok(['network', 'rm', 'cliv6']);
  }, 240_000);

  it('docker network prune removes the networks no container uses, and rm works once the containers are gone', async () => {
    await ok(['network', 'create', 'unused-a']);
    const out = await ok(['network', 'prune', '-f']);
    expect(out).toMatch(/Deleted Networks:/);
    const names = out.split('\n');
    expect(names).toContain('unused-a');
    expect(names).toContain('clinet2');
    expect(names).not.toContain('clinet');
    await ok(['rm', '-f', 'cli-web']);
    await ok(['network', 'rm', 'clinet']);
    expect((await ok(['network', 'ls', '--format', '{{.Name}}'])).split('\n')).not.toContain('clinet');
  }, 240_000);
});

describe(`docker-py networks against ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  it('networks.create/get/list/remove, containers.run(network=...) reaching a server by name', async () => {
    const script = path.join(api.work, 'py-networks.py');
    fs.writeFileSync(
      script,
      `import json, sys
import docker
from docker.types import IPAMConfig, IPAMPool
IMAGE = sys.argv[1]
client = docker.from_env(version="auto", timeout=120)
out = {}
net = client.networks.create("pynet", driver="bridge", labels={"by": "docker-py"},
                             ipam=IPAMConfig(pool_configs=[IPAMPool(subnet="10.231.20.0/24", gateway="10.231.20.1")]))
out["id"] = net.id
got = client.networks.get("pynet")
out["get"] = {"name": got.name, "subnet": got.attrs["IPAM"]["Config"][0]["Subnet"], "labels": got.attrs["Labels"]}
out["list"] = sorted(n.name for n in client.networks.list(names=["pynet"]))
web = client.containers.run(IMAGE, ["sh", "-c", "mkdir -p /www && echo from-py-web > /www/index.html && exec httpd -f -p 80 -h /www"],
                            name="py-web", network="pynet", detach=True)
web.reload()
out["web_ip"] = web.attrs["NetworkSettings"]["Networks"]["pynet"]["IPAddress"]
got.reload()
out["members"] = [c.name for c in got.containers]
out["fetched"] = client.containers.run(IMAGE, ["sh", "-c", "for i in $(seq 60); do wget -q -O- http://py-web/ && exit 0; sleep 0.5; done; exit 1"],
                                       network="pynet", remove=True).decode()
try:
    net.remove()
    out["remove_in_use"] = None
except docker.errors.APIError as e:
    out["remove_in_use"] = e.status_code
web.remove(force=True)
net.remove()
try:
    client.networks.get("pynet")
    out["after"] = "still there"
except docker.errors.NotFound:
    out["after"] = "not found"
print(json.dumps(out))
`,
    );
    const r = (await run(dockerPyPython(), [script, api.image], { env: api.clientEnv(), timeoutMs: 240_000 })) as Result;
    expect(r.code, `${show(r)}\nservice: ${api.log().slice(-2000)}`).toBe(0);
    const o = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(o.id).toMatch(/^[0-9a-f]{64}$/);
    expect(o.get).toEqual({ name: 'pynet', subnet: '10.231.20.0/24', labels: { by: 'docker-py' } });
    expect(o.list).toEqual(['pynet']);
    expect(o.web_ip).toMatch(/^10\.231\.20\.\d+$/);
    expect(o.members).toEqual(['py-web']);
    expect(o.fetched).toBe('from-py-web\n');
    expect(o.remove_in_use).toBe(403);
    expect(o.after).toBe('not found');
  }, 300_000);
});

describe(`docker-compose 1.29 with its project network against ${PEER}'s Engine API as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  const PROJECT = 'apinets';
  let dir: string;
  const compose = (args: string[]): Promise<Result> => run(composeBin(), ['--no-ansi', '-p', PROJECT, ...args], { env: api.clientEnv(), cwd: dir, timeoutMs: 240_000 });
  async function cok(args: string[]): Promise<string> {
    const r = await compose(args);
    expect(r.code, `docker-compose ${args.join(' ')}\n${show(r)}\nservice: ${api.log().slice(-2000)}`).toBe(0);
    return r.stdout;
  }

  beforeAll(() => {
    composeBin();
    dir = path.join(api.work, 'compose');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'docker-compose.yml'),
      JSON.stringify(
        {
          version: '3.8',
          services: {
            web: { image: api.image, command: httpd('hello-from-web') },
            // Reaches web by its service name (its alias on the project's network), retrying
            // while web comes up (a bounded number of tries), then says what it got.
            // ($$ is compose's escape of $.)
            client: { image: api.image, command: ['sh', '-c', 'for i in $$(seq 60); do wget -q -O /tmp/got http://web/ && break; sleep 0.5; done; echo "got: $$(cat /tmp/got)"; test -s /tmp/got'], depends_on: ['web'] },
          },
        },
        null,
        2,
      ),
    );
  });

  afterAll(async () => {
    if (dir) await compose(['down', '-t', '1']).catch(() => undefined);
  }, 240_000);

  it('up creates the project network; the client reaches web by its service name', async () => {
    await cok(['up', '-d']);
    const nets = (await ok(['network', 'ls', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--format', '{{.Name}}'])).trim().split('\n');
    expect(nets).toEqual([`${PROJECT}_default`]);
    const client = `${PROJECT}_client_1`;
    const code = await ok(['wait', client]);
    const logs = await cok(['logs', '--no-color', 'client']);
    expect(code.trim(), logs).toBe('0');
    expect(logs).toMatch(/client_1 +\| got: hello-from-web/);
    // Both on the project's network, web under its service name.
    const [net] = JSON.parse(await ok(['network', 'inspect', `${PROJECT}_default`])) as Net[];
    expect(Object.values(net!.Containers).map((c) => c.Name).sort()).toEqual([`${PROJECT}_web_1`]);
    const webEp = JSON.parse(await ok(['inspect', '--format', `{{json .NetworkSettings.Networks.${PROJECT}_default}}`, `${PROJECT}_web_1`])) as Endpoint;
    expect(webEp.Aliases).toContain('web');
    // A one-off container (compose run) joins the same network: attached (compose 1.29 reads the
    // container's Config.AttachStdin/AttachStdout back from inspect to decide what to attach),
    // then detached. compose attaches only after its start (dockerpty's lazy attach, without
    // logs), as against Docker: the one-off waits a moment so that its output follows the attach.
    const attached = await cok(['run', '--rm', '-T', 'client', 'sh', '-c', 'sleep 1; wget -q -O- http://web/']);
    expect(attached).toContain('hello-from-web');
    const once = (await cok(['run', '-d', 'client', 'wget', '-q', '-O-', 'http://web/'])).trim().split('\n').pop()!;
    expect((await ok(['wait', once])).trim()).toBe('0');
    expect(await ok(['logs', once])).toBe('hello-from-web\n');
    await ok(['rm', once]);
  }, 240_000);

  it('down removes the containers and the project network', async () => {
    await cok(['down', '-t', '1']);
    const left = await ok(['ps', '-a', '--format', '{{.Names}}']);
    expect(left).not.toMatch(new RegExp(PROJECT));
    expect((await ok(['network', 'ls', '--format', '{{.Name}}'])).split('\n')).not.toContain(`${PROJECT}_default`);
  }, 240_000);
});
