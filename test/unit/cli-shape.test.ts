/**
 * The pure parts of the CLI's Docker shapes and its one voice for errors (issue 12, items 7 and
 * 8): go-units' HumanDuration, Go's rendering of values in templates, `images REPO[:TAG]`,
 * `history` rows, `--expose`, `-u UID`'s group, the error text and exit statuses, and that every
 * message naming a `burrow X` command names one that exists.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { BurrowError, errorText, exitStatus, isBrokenPipe, runtimeText } from '../../ts/errors';
import { buildProgram, commanderError } from '../../ts/cli/main';
import { exposedPorts } from '../../ts/cli/commands/containers';
import { historyRows, referenceFilter, shownTag } from '../../ts/cli/commands/images';
import { ago, goValue, humanAge, render } from '../../ts/cli/format/table';
import { resolveUser } from '../../ts/container/spec';

const NOW = Date.parse('2026-01-01T12:00:00Z');
const before = (ms: number) => new Date(NOW - ms).toISOString();
const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;

describe("go-units' HumanDuration", () => {
  it('words and rounds as Docker does', () => {
    const cases: [number, string][] = [
      [0, 'Less than a second'],
      [999, 'Less than a second'],
      [1 * S, '1 second'],
      [59 * S, '59 seconds'],
      [60 * S, 'About a minute'],
      [119 * S, 'About a minute'], // minutes are cut, not rounded
      [120 * S, '2 minutes'],
      [27 * M + 40 * S, '27 minutes'],
      [59 * M + 59 * S, '59 minutes'],
      [60 * M, 'About an hour'],
      [89 * M, 'About an hour'], // hours are rounded
      [90 * M, '2 hours'],
      [47 * H, '47 hours'],
      [48 * H, '2 days'],
      [13 * D, '13 days'],
      [14 * D, '2 weeks'],
      [59 * D, '8 weeks'],
      [60 * D, '2 months'],
      [729 * D, '24 months'],
      [730 * D, '2 years'],
    ];
    for (const [ms, words] of cases) expect(humanAge(before(ms), NOW), `${ms} ms`).toBe(words);
    expect(ago(before(27 * M), NOW)).toBe('27 minutes ago');
    expect(ago(undefined, NOW)).toBe('N/A');
    expect(humanAge(before(-5 * S), NOW)).toBe('Less than a second'); // a clock behind the record
  });
});

describe("Go's rendering of values in --format", () => {
  it('lists, maps, nil, booleans and numbers as text/template prints them', () => {
    expect(goValue(['sh'])).toBe('[sh]');
    expect(goValue(['sh', '-c', 'echo hi'])).toBe('[sh -c echo hi]');
    expect(goValue({ b: '2', a: '1' })).toBe('map[a:1 b:2]');
    expect(goValue({})).toBe('map[]');
    expect(goValue([])).toBe('[]');
    expect(goValue({ '80/tcp': {} })).toBe('map[80/tcp:map[]]');
    expect(goValue({ k: null, l: [1, 2] })).toBe('map[k:<nil> l:[1 2]]');
    expect(goValue(null)).toBe('<no value>');
    expect(goValue(undefined)).toBe('<no value>');
    expect(goValue(true)).toBe('true');
    expect(goValue(0)).toBe('0');
  });

  it('in a template: fields, missing fields, json', () => {
    const o = { Config: { Cmd: ['sh'], Labels: { x: 'y' }, Tty: false, Entrypoint: null }, Id: 'abc' };
    expect(render('{{.Config.Cmd}} {{.Config.Labels}} {{.Config.Tty}} {{.Config.Entrypoint}} {{.Nope.Deeper}}', o)).toBe('[sh] map[x:y] false <no value> <no value>');
    expect(render('{{json .Config.Cmd}}', o)).toBe('["sh"]');
  });

  it("{{range}}: the body per element of a list or per value of a map in key order, as Go ranges; nested; nothing over nil", () => {
    const o = { NetworkSettings: { Networks: { b: { IPAddress: '10.0.0.2', Aliases: ['x', 'y'] }, a: { IPAddress: '10.0.1.2', Aliases: null } } }, Args: ['-c', 'true'] };
    expect(render('{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', o)).toBe('10.0.1.2 10.0.0.2 ');
    expect(render('<{{range .Args}}[{{.}}]{{end}}>', o)).toBe('<[-c][true]>');
    expect(render('{{range .NetworkSettings.Networks}}{{range .Aliases}}{{.}},{{end}};{{end}}', o)).toBe(';x,y,;');
    expect(render('a{{range .Nope}}x{{end}}b', o)).toBe('ab');
    expect(render('{{ range .Args }}{{.}}{{ end }}\\t{{json .Args}}', o)).toBe('-ctrue\t["-c","true"]');
  });
});

describe('images REPOSITORY[:TAG]', () => {
  it('matches the repository as shown or in full, then the tag', () => {
    const m = (filter: string, full: string, tag: string) => referenceFilter(filter)(full, tag);
    expect(m('busybox', 'docker.io/library/busybox', 'latest')).toBe(true);
    expect(m('busybox:1.36', 'docker.io/library/busybox', 'latest')).toBe(false);
    expect(m('busybox:1.36', 'docker.io/library/busybox', '1.36')).toBe(true);
    expect(m('library/busybox', 'docker.io/library/busybox', 'latest')).toBe(true);
    expect(m('docker.io/library/busybox:latest', 'docker.io/library/busybox', 'latest')).toBe(true);
    expect(m('busybox', 'localhost:5000/busybox', 'latest')).toBe(false);
    expect(m('localhost:5000/busybox', 'localhost:5000/busybox', 'latest')).toBe(true);
    expect(m('localhost:5000/busybox:latest', 'localhost:5000/busybox', 'latest')).toBe(true);
    expect(m('localhost:5000/busybox:v2', 'localhost:5000/busybox', 'latest')).toBe(false);
    expect(m('me/*', 'docker.io/me/app', 'v1')).toBe(true);
    expect(m('me/*', 'docker.io/me/app/sub', 'v1')).toBe(false);
    expect(m('me/app:v?', 'docker.io/me/app', 'v1')).toBe(true);
    expect(m('bus', 'docker.io/library/busybox', 'latest')).toBe(false);
  });

  it('rmi names a tag as images shows it', () => {
    expect(shownTag('docker.io/library/busybox:latest')).toBe('busybox:latest');
    expect(shownTag('docker.io/me/app:v1')).toBe('me/app:v1');
    expect(shownTag('localhost:5000/busybox:latest')).toBe('localhost:5000/busybox:latest');
    expect(shownTag('quay.io/x/y:1')).toBe('quay.io/x/y:1');
  });
});

describe('history', () => {
  it("rows newest first, Docker's columns, the layer sizes on the entries that made layers", () => {
    const history = [
      { created: before(3 * D), created_by: '/bin/sh -c #(nop) ADD file:abc in / ' },
      { created: before(3 * D), created_by: '/bin/sh -c #(nop)  CMD ["sh"]', empty_layer: true },
      { created: before(2 * H), created_by: '/bin/sh -c\tapk add --no-cache a-package-with-a-rather-long-name another', comment: 'buildkit' },
    ];
    const rows = historyRows(history, `sha256:${'ab'.repeat(32)}`, [4_260_000, 1234], true, NOW);
    expect(rows.map((r) => [r.ID, r.CreatedSince, r.CreatedBy, r.Size, r.Comment])).toEqual([
      ['abababababab', '2 hours ago', '/bin/sh -c apk add --no-cache a-package-with…', '1.23kB', 'buildkit'],
      ['<missing>', '3 days ago', '/bin/sh -c #(nop)  CMD ["sh"]', '0B', ''],
      ['<missing>', '3 days ago', '/bin/sh -c #(nop) ADD file:abc in / ', '4.26MB', ''],
    ]);
    expect([...rows[0]!.CreatedBy]).toHaveLength(45);
    const full = historyRows(history, `sha256:${'ab'.repeat(32)}`, [1, 2], false, NOW);
    expect(full[0]!.ID).toBe(`sha256:${'ab'.repeat(32)}`);
    expect(full[0]!.CreatedBy).toBe('/bin/sh -c apk add --no-cache a-package-with-a-rather-long-name another');
  });
});

describe('--expose', () => {
  it("Docker's ExposedPorts keys, one per port of a range, or a usage error", () => {
    expect(exposedPorts(['80', '8080/tcp', '53/udp', '9000-9002/udp', '80'])).toEqual(['80/tcp', '8080/tcp', '53/udp', '9000/udp', '9001/udp', '9002/udp']);
    for (const bad of ['eighty', '0', '70000', '90-80', '80/icmp', '']) expect(() => exposedPorts([bad]), bad).toThrow(/invalid --expose/);
  });
});

describe('-u UID', () => {
  it("takes the group from the image's passwd, top layer first; the same number when the uid is not there", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'burrow-unit-user-'));
    try {
      const layer = (name: string, passwd: string) => {
        fs.mkdirSync(path.join(dir, name, 'etc'), { recursive: true });
        fs.writeFileSync(path.join(dir, name, 'etc', 'passwd'), passwd);
        return path.join(dir, name);
      };
      const lower = layer('lower', 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n');
      const upper = layer('upper', 'root:x:0:0::/root:/bin/sh\napp:x:1000:1234::/home/app:/bin/sh\n');
      expect(resolveUser('1000', [upper, lower])).toEqual({ uid: 1000, gid: 1234 });
      expect(resolveUser('1000', [lower])).toEqual({ uid: 1000, gid: 1000 });
      expect(resolveUser('2000', [upper, lower])).toEqual({ uid: 2000, gid: 2000 });
      expect(resolveUser('2000:7', [upper])).toEqual({ uid: 2000, gid: 7 });
      expect(resolveUser('0', [upper])).toEqual({ uid: 0, gid: 0 });
      expect(resolveUser('app', [upper])).toEqual({ uid: 1000, gid: 1234 });
      expect(resolveUser(undefined, [upper])).toEqual({ uid: 0, gid: 0 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("looks names up in a one-file image's /etc files as read from the file, the same as in a layer", () => {
    const etc = { passwd: Buffer.from('root:x:0:0::/root:/bin/sh\napp:x:1000:1234::/home/app:/bin/sh\n'), group: Buffer.from('root:x:0:\napp:x:1234:\nstaff:x:50:\n') };
    expect(resolveUser('app', [etc])).toEqual({ uid: 1000, gid: 1234 });
    expect(resolveUser('1000', [etc])).toEqual({ uid: 1000, gid: 1234 });
    expect(resolveUser('app:staff', [etc])).toEqual({ uid: 1000, gid: 50 });
    expect(() => resolveUser('nobody', [etc])).toThrow(/unable to find user nobody/);
    // A file without /etc/group: a group name cannot be found, a number still works.
    expect(() => resolveUser('app:staff', [{ passwd: etc.passwd }])).toThrow(/unable to find group staff/);
    expect(resolveUser('app:7', [{ passwd: etc.passwd }])).toEqual({ uid: 1000, gid: 7 });
  });
});

describe('one voice for errors', () => {
  it("Error: first, the fix on its own line, Docker's statuses from one place", () => {
    expect(errorText(new BurrowError('ECONTAINER_NOT_FOUND', 'no such container: x'))).toBe('Error: no such container: x\n');
    expect(errorText(new BurrowError('EUSAGE', 'bad', 'do this'))).toBe('Error: bad\nfix: do this\n');
    expect(errorText(new TypeError('boom'))).toBe('Error: boom\n');
    expect(exitStatus(new BurrowError('ECONTAINER_NOT_FOUND', 'x'))).toBe(125);
    expect(exitStatus(new BurrowError('ECONTAINER_STATE', 'x'))).toBe(125);
    expect(exitStatus(new BurrowError('ECMD_NOT_FOUND', 'x'))).toBe(127);
    expect(exitStatus(new BurrowError('ECMD_CANNOT_INVOKE', 'x'))).toBe(126);
    expect(exitStatus(new Error('x'))).toBe(125);
    expect(commanderError("error: unknown option '--bogus'\n")).toBe("Error: unknown option '--bogus'\n");
  });

  it("the runtime's text without its name or level", () => {
    expect(runtimeText('burrow-runtime: container x is not running\n')).toBe('container x is not running');
    expect(runtimeText('burrow-runtime: error: cannot open x\nburrow-runtime: warning: y\n')).toBe('cannot open x\nwarning: y');
    expect(runtimeText('burrow-runtime unpack: bad tar\n')).toBe('bad tar');
  });

  it('a closed pipe is recognised through causes', () => {
    const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    expect(isBrokenPipe(epipe)).toBe(true);
    expect(isBrokenPipe(new BurrowError('EINTERNAL', 'x', undefined, { cause: epipe }))).toBe(true);
    expect(isBrokenPipe(new Error('x'))).toBe(false);
  });

  it('every message that names a `burrow X` command names one that exists', () => {
    const program = buildProgram(() => undefined, true);
    const names = (c: Command) => [c.name(), ...c.aliases()];
    const find = (parent: Command, word: string) => parent.commands.find((c) => names(c).includes(word));
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if ((e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) || e.name.endsWith('.rs')) files.push(path.join(d, e.name));
      }
    };
    // The CLI's messages, and the Rust core's and runtime's, which reach the user through it.
    walk(path.join(__dirname, '..', '..', 'ts'));
    for (const c of ['burrow-core', 'burrow-runtime', 'burrow-node']) walk(path.join(__dirname, '..', '..', 'crates', c, 'src'));
    const missing: string[] = [];
    let seen = 0;
    for (const f of files) {
      const text = fs.readFileSync(f, 'utf8');
      // How messages and fixes name a command: `burrow X …` in backquotes, or after a colon
      // followed by an argument ("start it first: burrow start ${name}"), not prose.
      for (const m of text.matchAll(/`burrow ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?|: burrow ([a-z][a-z-]*)(?= \$\{| -| [A-Z<]|['"`\n]|$)/gm)) {
        seen++;
        const word = m[1] ?? m[3] ?? '';
        const sub = m[2];
        const cmd = word === 'help' ? program : find(program, word);
        if (!cmd) missing.push(`${path.basename(f)}: burrow ${word}`);
        else if (sub && cmd.commands.length && !find(cmd, sub)) missing.push(`${path.basename(f)}: burrow ${word} ${sub}`);
      }
    }
    expect(seen).toBeGreaterThan(20);
    expect(missing).toEqual([]);
  });
});
