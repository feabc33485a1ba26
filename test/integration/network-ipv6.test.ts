/**
 * IPv6 on user-defined networks (#16) and the network owner's outbound helper kept alive, with
 * each outbound helper: slirp4netns (the default) and pasta (`BURROW_NETWORK=pasta`, which the
 * owner follows):
 * - an `--ipv6` network routes IPv6 out through the owner's helper (masqueraded by ip6tables in
 *   the owner's namespace): a server this test runs on the host's `[::1]` answers a container
 *   through the helper's host address `[fd00::2]` when the network allows the host's loopback
 *   (`-o allow_host_loopback=true`), and not otherwise; an `--internal --ipv6` network has no
 *   IPv6 route out at all;
 * - containers on an `--ipv6` network reach each other over IPv6, by address and by name (AAAA),
 *   and inspect shows Docker's IPv6 fields;
 * - the owner's helper killed by its pid is restarted by the owner: a container's outbound
 *   connections work again, and the owner's log says what happened;
 * - pasta routes no IPv6 on a host without an IPv6 default route (slirp4netns needs none): the
 *   run says so (as root only: such a host is a network namespace of the test's own).
 * Loopback only. Runs as root and as the unprivileged test user.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, IS_ROOT } from './helpers';
import { alive, cmdline, IMAGE, ownerPid, ppidOf, setup, waitFor, type Env } from './lifecycle.helpers';
import { hostServer } from './host-server';

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const HAVE_SLIRP = have('slirp4netns');
const HAVE_PASTA = have('pasta');
const HAVE_IPV6 = fs.existsSync('/proc/sys/net/ipv6');
/** pasta takes its IPv6 side from the host's interface with an IPv6 default route (none: no IPv6). */
const HOST_V6_ROUTE = HAVE_IPV6 && fs.readFileSync('/proc/net/ipv6_route', 'utf8').split('\n').some((l) => /^0{32} 00 /.test(l) && !/ lo$/.test(l.trim()));

let env: Env;
beforeAll(() => {
  env = setup('netv6');
});
afterAll(() => env?.dispose());

const b = (args: string[]) => env.b(args);
const inspect = (ref: string) => env.inspect(ref);
const runD = (...args: string[]) => env.runD(...args);

/** The owner's outbound helper: its child that is slirp4netns (or pasta, which may run as passt.avx2). */
function outboundHelpers(owner: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && ppidOf(Number(d)) === owner && alive(Number(d)))
    .map(Number)
    .filter((p) => {
      try {
        return /^(slirp4netns|pasta|passt)/.test(fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim());
      } catch {
        return false;
      }
    });
}

/** A shell loop that retries `cmd` while something comes up (at most ~20 s). */
const retry = (cmd: string) => `(for i in $(seq 200); do ${cmd} && exit 0; sleep 0.1; done; exit 1)`;

const HTTPD = ['sh', '-c', 'mkdir -p /www && echo "page from $(hostname)" > /www/index.html && exec httpd -f -p 80 -h /www'];
const re = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The owner's helper for a describe: pasta through BURROW_NETWORK, which the owner follows. */
function useHelper(helper: 'slirp4netns' | 'pasta'): void {
  const before = process.env.BURROW_NETWORK;
  beforeAll(() => {
    if (helper === 'pasta') process.env.BURROW_NETWORK = 'pasta';
    else delete process.env.BURROW_NETWORK;
  });
  afterAll(() => {
    if (before === undefined) delete process.env.BURROW_NETWORK;
    else process.env.BURROW_NETWORK = before;
  });
}

/** The owner's log (it says which helper it started: "ready (...), helper NAME pid N"). */
const ownerLog = () => fs.readFileSync(path.join(env.runroot, 'network-owner', 'owner.log'), 'utf8');

/** Per describe: the networks it made and the owners it saw, gone after each test. */
function fixtures() {
  const nets: string[] = [];
  const netCreate = (...args: string[]) => {
    const r = b(['network', 'create', ...args]);
    expect(r.code, r.stderr).toBe(0);
    nets.push(args[args.length - 1]!);
  };
  const owners = new Set<number>();
  afterEach(() => {
    env.cleanup();
    for (const pid of owners) waitFor(() => !alive(pid), 10_000, `owner process ${pid} (${cmdline(pid)}) to exit after the last container`);
    owners.clear();
    for (const n of nets.splice(0)) b(['network', 'rm', n]);
  });

  return { netCreate, owners };
}

/** The tests that go through the owner's outbound helper, for `helper`. */
function outboundTests(helper: 'slirp4netns' | 'pasta'): void {
  const { netCreate, owners } = fixtures();

  it(`an --ipv6 network reaches the host's [::1] through the owner's ${helper} when it allows the host's loopback; without that, or --internal, it does not`, async () => {
    const srv = await hostServer('hello over IPv6', { ipv6: true });
    try {
      netCreate('--ipv6', '-o', 'allow_host_loopback=true', 'v6-out');
      netCreate('--ipv6', 'v6-closed');
      netCreate('--ipv6', '--internal', '-o', 'allow_host_loopback=true', 'v6-int');
      const net = JSON.parse(b(['network', 'inspect', 'v6-out']).stdout)[0];
      const gw6 = (net.IPAM.Config as { Subnet: string; Gateway: string }[]).find((c) => c.Subnet.includes(':'))!.Gateway;
      const ok = await env.bg(['run', '--rm', '--network', 'v6-out', IMAGE, 'sh', '-c', `ip -6 route; wget -q -O- http://[fd00::2]:${srv.port}/; echo; wget -q -O- http://10.0.2.2:${srv.port}/`]);
      expect(ok.code, ok.stderr + ok.stdout).toBe(0);
      // Its IPv6 default route is the network's IPv6 gateway (the bridge in the owner's namespace).
      expect(ok.stdout).toMatch(new RegExp(`^default via ${re(gw6)} `, 'm'));
      expect(ok.stdout).toMatch(/hello over IPv6\nhello over IPv6$/);
      // Masqueraded by the helper: the host sees its own loopback addresses.
      expect(srv.hits()).toEqual(['::1', '127.0.0.1']);
      expect(ok.stderr).not.toMatch(/warning/);
      expect(ownerLog()).toMatch(new RegExp(`ready \\(${IS_ROOT ? 'root' : 'rootless'}\\), helper ${helper} pid \\d+`));
      // Without allow_host_loopback: a way out, but not to the host's loopback (either family).
      const closed = await env.bg(['run', '--rm', '--network', 'v6-closed', IMAGE, 'sh', '-c', `ip -6 route; timeout 3 wget -q -O- http://[fd00::2]:${srv.port}/; echo "v6=$?"; timeout 3 wget -q -O- http://10.0.2.2:${srv.port}/; echo "v4=$?"`]);
      expect(closed.code, closed.stderr).toBe(0);
      expect(closed.stdout).toMatch(/^default via /m);
      expect(closed.stdout).toMatch(/v6=[1-9]/);
      expect(closed.stdout).toMatch(/v4=[1-9]/);
      // --internal: no IPv6 route out at all, whatever its options.
      const int = await env.bg(['run', '--rm', '--network', 'v6-int', IMAGE, 'sh', '-c', `ip -6 route; timeout 3 wget -q -O- http://[fd00::2]:${srv.port}/; echo "v6=$?"`]);
      expect(int.code, int.stderr).toBe(0);
      expect(int.stdout).not.toMatch(/^default/m);
      expect(int.stdout).toMatch(/v6=[1-9]/);
      expect(srv.hits()).toHaveLength(2);
    } finally {
      srv.stop();
    }
  });

  it(`the owner restarts its ${helper} when it is killed: a container's outbound connections work again, and the owner's log says so`, async () => {
    const srv = await hostServer('still here', { ipv6: true });
    try {
      netCreate('--ipv6', '-o', 'allow_host_loopback=true', 'v6-rs');
      const c = runD('--network', 'v6-rs', IMAGE, 'sleep', '300');
      const owner = ownerPid(env.runroot);
      expect(owner).toBeDefined();
      owners.add(owner!);
      const get = `wget -q -O- http://10.0.2.2:${srv.port}/ && wget -q -O- http://[fd00::2]:${srv.port}/`;
      const before = b(['exec', c, 'sh', '-c', get]);
      expect(before.code, before.stderr).toBe(0);
      const [killed, ...more] = outboundHelpers(owner!);
      expect(killed, 'the owner has one outbound helper').toBeDefined();
      expect(more).toEqual([]);
      expect(fs.readFileSync(`/proc/${killed}/comm`, 'utf8')).toMatch(helper === 'pasta' ? /^(pasta|passt)/ : /^slirp4netns/);
      owners.add(killed!);
      process.kill(killed!, 'SIGKILL');
      waitFor(() => !alive(killed!), 10_000, 'the killed helper to be gone');
      // Outbound again through the helper the owner started in its place.
      const after = b(['exec', c, 'sh', '-c', `${retry(`timeout 2 wget -q -O /dev/null http://10.0.2.2:${srv.port}/`)} && ${get}`]);
      expect(after.code, after.stderr + after.stdout).toBe(0);
      expect(after.stdout).toBe('still herestill here');
      const [fresh] = outboundHelpers(owner!);
      expect(fresh).toBeDefined();
      expect(fresh).not.toBe(killed);
      owners.add(fresh!);
      // The owner logs the restart once it has applied the filter again, which can be after the
      // first packets pass (CI saw the exec finish first): wait for the line, then check both.
      const restarted = new RegExp(`outbound helper restarted \\(restart 1 of \\d+\\), pid ${fresh}`);
      waitFor(() => restarted.test(ownerLog()), 10_000, "the owner's restart line");
      const log = ownerLog();
      expect(log).toMatch(new RegExp(`outbound helper \\(${helper}, pid ${killed}\\) was killed by SIGKILL`));
      expect(log).toMatch(restarted);
    } finally {
      srv.stop();
    }
  });
}

describe.runIf(HAVE_SLIRP && HAVE_IPV6)(`IPv6 on user-defined networks as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  useHelper('slirp4netns');
  const { netCreate, owners } = fixtures();

  it('containers on an --ipv6 network reach each other over IPv6, by address and by name (AAAA)', () => {
    netCreate('--ipv6', 'v6-c2c');
    const web = runD('--name', 'v6-web', '--network', 'v6-c2c', IMAGE, ...HTTPD);
    const pid = ownerPid(env.runroot);
    expect(pid).toBeDefined();
    owners.add(pid!);
    // inspect's endpoint carries Docker's IPv6 fields: the address in the network's IPv6 subnet,
    // its prefix length and the network's IPv6 gateway; network inspect lists it with its prefix.
    const [net] = JSON.parse(b(['network', 'inspect', 'v6-c2c']).stdout) as { EnableIPv6: boolean; IPAM: { Config: { Subnet: string; Gateway: string }[] }; Containers: Record<string, { IPv6Address: string }> }[];
    expect(net!.EnableIPv6).toBe(true);
    expect(net!.IPAM.Config).toEqual([{ Subnet: expect.stringMatching(/^[\d.]+\/\d+$/), Gateway: expect.stringMatching(/^[\d.]+$/) }, { Subnet: expect.stringMatching(/^[0-9a-f:]+::\/64$/), Gateway: expect.stringMatching(/^[0-9a-f:]+::1$/) }]);
    const v6 = net!.IPAM.Config[1]!;
    const ep = inspect(web).NetworkSettings.Networks['v6-c2c'];
    const ip6 = ep.GlobalIPv6Address as string;
    expect(ip6.startsWith(v6.Subnet.replace(/::\/64$/, ':'))).toBe(true);
    expect(ep).toMatchObject({ IPv6Gateway: v6.Gateway, GlobalIPv6PrefixLen: 64 });
    expect(b(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPv6Gateway}} {{.GlobalIPv6Address}}/{{.GlobalIPv6PrefixLen}}{{end}}', web]).stdout.trim()).toBe(`${v6.Gateway} ${ip6}/64`);
    expect(JSON.parse(b(['network', 'inspect', 'v6-c2c']).stdout)[0].Containers[web]).toMatchObject({ IPv6Address: `${ip6}/64` });
    const r = b(['run', '--rm', '--network', 'v6-c2c', IMAGE, 'sh', '-c', `${retry(`wget -q -O /tmp/a http://[${ip6}]/`)}; cat /tmp/a; nslookup -type=AAAA v6-web; ping -6 -c1 -W5 v6-web >/dev/null; echo "ping=$?"`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^page from \w+\n/);
    expect(r.stdout).toMatch(new RegExp(`Address(?: 1)?:\\s+${re(ip6)}`));
    expect(r.stdout).toMatch(/ping=0/);
  });

});

describe.runIf(HAVE_SLIRP && HAVE_IPV6)(`IPv6 out of user-defined networks through slirp4netns as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  useHelper('slirp4netns');
  outboundTests('slirp4netns');
});

// pasta routes IPv6 only where the host has an IPv6 default route (the last describe shows the
// other case).
describe.runIf(HAVE_PASTA && HOST_V6_ROUTE)(`IPv6 out of user-defined networks through pasta as ${IS_ROOT ? 'root' : 'an unprivileged user'}`, () => {
  useHelper('pasta');
  outboundTests('pasta');
});

// A host without an IPv6 default route, as a network namespace of the test's own (root only: as
// the unprivileged user, `unshare -r` would make burrow root in it, another case), with an IPv4
// default route on a veth pair and a server on its loopback: the whole of burrow runs in it.
describe.runIf(IS_ROOT && HAVE_PASTA && HAVE_IPV6 && have('unshare'))("pasta on a host without an IPv6 default route (the test's own network namespace, as root)", () => {
  useHelper('pasta');
  const { netCreate, owners } = fixtures();

  it('a run on an --ipv6 network says that IPv6 is not routed out, and why; IPv4 still goes out', () => {
    netCreate('--ipv6', '-o', 'allow_host_loopback=true', 'v6-noroute');
    const www = path.join(env.work, 'www-noroute');
    fs.mkdirSync(www, { recursive: true });
    fs.writeFileSync(path.join(www, 'index.html'), 'from the namespace\n');
    const script = [
      'ip link set lo up',
      'ip link add v0 type veth peer name v1',
      'ip addr add 198.51.100.2/24 dev v0',
      'ip link set v0 up && ip link set v1 up',
      'ip route add default via 198.51.100.1',
      `busybox httpd -f -p 127.0.0.1:8080 -h ${www} & H=$!`,
      `r=0; "$NODE" "$BIN" --root "$STORE" --runroot "$RUNROOT" run --rm --network v6-noroute ${IMAGE} sh -c 'ip -6 route | grep -q "^default" && echo v6-route; ${retry('wget -q -O- http://10.0.2.2:8080/')}; timeout 3 wget -q -O- "http://[fd00::2]:8080/"; echo "v6=$?"' || r=$?`,
      'kill $H; exit $r',
    ].join('\n');
    const r = spawnSync('unshare', ['-n', 'sh', '-ec', script], { encoding: 'utf8', env: { ...process.env, NODE: process.execPath, BIN, STORE: env.store, RUNROOT: env.runroot }, timeout: 120_000 });
    const pid = Number([...ownerLog().matchAll(/network-owner\[(\d+)\]: ready/g)].pop()?.[1]);
    if (pid) owners.add(pid);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    // IPv4 out through pasta; IPv6 between the container and its bridge, but not beyond.
    expect(r.stdout).toMatch(/^v6-route\nfrom the namespace\nv6=[1-9]/);
    expect(r.stderr).toMatch(/burrow: warning: \S+: the outbound helper, pasta, routes no IPv6: .*this host has none\. .*slirp4netns routes IPv6 out without a host route/);
    expect(ownerLog()).toMatch(/the outbound helper, pasta, routes no IPv6/);
  });
});
