/**
 * CDI's pieces without a container: the YAML subset (against the shapes nvidia-ctk and
 * sigs.k8s.io/yaml write), the spec checks (versions, unknown fields, kinds, names), the
 * qualified names, and --hpc's environment and binds. The real thing runs in
 * test/integration/cdi.test.ts and hpc.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseYaml, YamlError } from '../../ts/cdi/yaml';
import { parseSpec } from '../../ts/cdi/spec';
import { looksQualified, parseQualified } from '../../ts/cdi/names';
import { hpcBinds, hpcEnv } from '../../ts/container/hpc';
import { BurrowError } from '../../ts/errors';
import { createRequestOf } from '../../ts/api/convert/create';

// The shape of `nvidia-ctk cdi generate` output (go-yaml: sequences not indented under keys).
const NVIDIA = `---
cdiVersion: 0.5.0
containerEdits:
  deviceNodes:
  - path: /dev/nvidia-modeset
  - path: /dev/nvidiactl
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  hooks:
  - args:
    - nvidia-cdi-hook
    - update-ldcache
    - --folder
    - /usr/lib/x86_64-linux-gnu
    hookName: createContainer
    path: /usr/bin/nvidia-cdi-hook
  mounts:
  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05
    hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05
    options:
    - ro
    - nosuid
    - nodev
    - bind
devices:
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: "0"
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: all
kind: nvidia.com/gpu
`;

function yamlErr(text: string): YamlError {
  try {
    parseYaml(text);
  } catch (e) {
    if (e instanceof YamlError) return e;
    throw e;
  }
  throw new Error(`parsed: ${text}`);
}

function specErr(text: string, file = 'x.json'): BurrowError {
  try {
    parseSpec(text, file);
  } catch (e) {
    if (e instanceof BurrowError) return e;
    throw e;
  }
  throw new Error(`accepted: ${text}`);
}

describe('the YAML subset of CDI specs', () => {
  it("reads nvidia-ctk's shape (sequences at the key's indentation, items that are mappings, quoted names)", () => {
    const v = parseYaml(NVIDIA) as Record<string, any>;
    expect(v.cdiVersion).toBe('0.5.0');
    expect(v.kind).toBe('nvidia.com/gpu');
    expect(v.containerEdits.deviceNodes).toEqual([{ path: '/dev/nvidia-modeset' }, { path: '/dev/nvidiactl' }]);
    expect(v.containerEdits.hooks[0]).toEqual({ args: ['nvidia-cdi-hook', 'update-ldcache', '--folder', '/usr/lib/x86_64-linux-gnu'], hookName: 'createContainer', path: '/usr/bin/nvidia-cdi-hook' });
    expect(v.containerEdits.mounts[0].options).toEqual(['ro', 'nosuid', 'nodev', 'bind']);
    expect(v.devices).toEqual([
      { containerEdits: { deviceNodes: [{ path: '/dev/nvidia0' }] }, name: '0' },
      { containerEdits: { deviceNodes: [{ path: '/dev/nvidia0' }] }, name: 'all' },
    ]);
  });

  it('indented sequences, comments, flow collections, quoting, numbers, booleans and null', () => {
    const v = parseYaml(
      [
        '# a comment',
        'a:',
        '  - x   # trailing',
        "  - 'it''s'",
        '  - "tab\\there"',
        '  -   k: 1',
        '      j: 0x1f',
        'b: []',
        'c: {}',
        'd: [1, "two", three]',
        'e: true',
        'f: ~',
        'g: 0o644',
        'h: "a: b # not a comment"',
        'i: lib.so.1::/usr/lib/lib.so',
        'j: 1.5',
      ].join('\n'),
    );
    expect(v).toEqual({ a: ['x', "it's", 'tab\there', { k: 1, j: 31 }], b: [], c: {}, d: [1, 'two', 'three'], e: true, f: null, g: 420, h: 'a: b # not a comment', i: 'lib.so.1::/usr/lib/lib.so', j: 1.5 });
  });

  it('refuses what it does not read, naming the line', () => {
    expect(yamlErr('a: &x 1\nb: *x\n').message).toMatch(/line 1: anchors and aliases/);
    expect(yamlErr('a: |\n  text\n').message).toMatch(/line 1: block scalars/);
    expect(yamlErr('a: !!str 1\n').message).toMatch(/line 1: tags/);
    expect(yamlErr('a: 1\n---\nb: 2\n').message).toMatch(/line 2: more than one document/);
    expect(yamlErr('a: 1\na: 2\n').message).toMatch(/line 2: key a appears twice/);
    expect(yamlErr('a:\n  b: 1\n    c: 2\n').message).toMatch(/line 3: unexpected indentation/);
    expect(yamlErr('a:\n\tb: 1\n').message).toMatch(/line 2: a tab/);
    expect(yamlErr('a: [1, 2\n').message).toMatch(/line 1: unterminated/);
  });
});

describe('CDI spec checks', () => {
  const ok = { cdiVersion: '0.6.0', kind: 'example.com/fake', devices: [{ name: 'gpu0', containerEdits: { env: ['A=1'] } }] };

  it('reads JSON and YAML to the same spec', () => {
    const j = parseSpec(JSON.stringify(ok), 'x.json');
    const y = parseSpec('cdiVersion: "0.6.0"\nkind: example.com/fake\ndevices:\n- name: gpu0\n  containerEdits:\n    env: [A=1]\n', 'x.yaml');
    expect(y).toEqual({ ...j, file: 'x.yaml' });
    expect(parseSpec(NVIDIA, 'nvidia.yaml').devices.map((d) => d.name)).toEqual(['0', 'all']);
  });

  it('versions 0.3.0 to 0.8.x only, and fields no older than the version they came with', () => {
    expect(specErr(JSON.stringify({ ...ok, cdiVersion: '0.2.0' })).message).toMatch(/cdiVersion: 0\.2\.0 is not one burrow reads \(0\.3\.0 to 0\.8\.0\)/);
    expect(specErr(JSON.stringify({ ...ok, cdiVersion: '1.1.0' })).code).toBe('ECDI_SPEC_INVALID');
    expect(parseSpec(JSON.stringify({ ...ok, cdiVersion: '0.8.1' }), 'x.json').cdiVersion).toBe('0.8.1');
    const hostPath = { ...ok, cdiVersion: '0.4.0', devices: [{ name: 'd', containerEdits: { deviceNodes: [{ path: '/dev/x', hostPath: '/dev/null' }] } }] };
    expect(specErr(JSON.stringify(hostPath)).message).toMatch(/devices\[0\]\.containerEdits\.deviceNodes\[0\]\.hostPath: needs cdiVersion 0\.5\.0 or later, the file says 0\.4\.0/);
    expect(specErr(JSON.stringify({ ...ok, cdiVersion: '0.5.0', annotations: { a: 'b' } })).message).toMatch(/annotations: needs cdiVersion 0\.6\.0/);
  });

  it('unknown fields, bad kinds and names, a missing devices list, bad hooks: each names the field', () => {
    expect(specErr(JSON.stringify({ ...ok, extra: 1 })).message).toMatch(/CDI spec x\.json extra: unknown field/);
    expect(specErr(JSON.stringify({ ...ok, kind: 'nodomain' })).message).toMatch(/kind: "nodomain" is not VENDOR\/CLASS/);
    expect(specErr(JSON.stringify({ ...ok, devices: [] })).message).toMatch(/devices: must be a non-empty list/);
    expect(specErr(JSON.stringify({ ...ok, devices: [{ name: '-bad' }] })).message).toMatch(/devices\[0\]\.name: "-bad" is not a device name/);
    expect(specErr(JSON.stringify({ ...ok, devices: [{ name: 'a' }, { name: 'a' }] })).message).toMatch(/defined twice/);
    expect(specErr(JSON.stringify({ ...ok, containerEdits: { hooks: [{ hookName: 'createContainer', path: 'rel' }] } })).message).toMatch(/containerEdits\.hooks\[0\]\.path: "rel" must be an absolute path/);
    expect(specErr(JSON.stringify({ ...ok, containerEdits: { env: ['NOEQUALS'] } })).message).toMatch(/env\[0\]: "NOEQUALS" is not NAME=VALUE/);
    expect(specErr('{ "cdiVersion": ', 'x.json').message).toMatch(/is not valid JSON/);
    expect(specErr('a: [', 'x.yaml').message).toMatch(/is not valid YAML: line 1/);
  });
});

describe('CDI names', () => {
  it('qualified names, and what --device takes as one', () => {
    expect(parseQualified('nvidia.com/gpu=0')).toEqual({ kind: 'nvidia.com/gpu', name: '0' });
    expect(parseQualified('vendor.com/class=all')).toEqual({ kind: 'vendor.com/class', name: 'all' });
    expect(parseQualified('vendor.com/class=-x')).toBeUndefined();
    expect(looksQualified('vendor.com/class=-x')).toBe(true);
    expect(looksQualified('/dev/null')).toBe(false);
    expect(looksQualified('/dev/null:/dev/x:rw')).toBe(false);
  });
});

describe('--hpc', () => {
  it("passes the host's environment except the deny list and what the image sets", () => {
    const env = hpcEnv({ PATH: '/host/bin', LD_LIBRARY_PATH: '/x', PS1: '$ ', HOME: '/home/u', FOO: 'bar', IMG: 'host', BURROW_ROOT: '/s', HOSTNAME: 'h' }, ['PATH=/usr/bin', 'IMG=image']);
    expect(env.sort()).toEqual(['FOO=bar', 'HOME=/home/u']);
  });

  it('binds $HOME, $TMPDIR and the working directory once each, never a system directory or a taken destination', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hpc-unit-'));
    const home = path.join(base, 'home');
    const work = path.join(home, 'project');
    const tmp = path.join(base, 'tmp');
    for (const d of [work, tmp]) fs.mkdirSync(d, { recursive: true });
    try {
      expect(hpcBinds({ HOME: home, TMPDIR: tmp }, work, [])).toEqual([home, tmp]);
      expect(hpcBinds({ HOME: home, TMPDIR: tmp }, '/usr', [])).toEqual([home, tmp]);
      expect(hpcBinds({ HOME: home, TMPDIR: tmp }, base, [tmp])).toEqual([base]);
      expect(hpcBinds({ HOME: '/' }, '/', [])).toEqual(['/tmp']);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('the Engine API: CDI devices, --gpus and the host namespaces from a Docker create body', () => {
  it('Devices with a CDI name, DeviceRequests of driver cdi and of the gpu capability, PidMode/IpcMode host', () => {
    const body = (h: object) => createRequestOf({ Image: 'i', HostConfig: h }, undefined);
    expect(body({ Devices: [{ PathOnHost: 'nvidia.com/gpu=0', PathInContainer: 'nvidia.com/gpu=0', CgroupPermissions: 'rwm' }, { PathOnHost: '/dev/fuse', PathInContainer: '/dev/fuse', CgroupPermissions: 'rwm' }] }).request.devices).toEqual(['nvidia.com/gpu=0', '/dev/fuse:/dev/fuse:rwm']);
    expect(body({ DeviceRequests: [{ Driver: 'cdi', DeviceIDs: ['vendor.com/x=a', 'vendor.com/x=b'] }] }).request.devices).toEqual(['vendor.com/x=a', 'vendor.com/x=b']);
    expect(body({ DeviceRequests: [{ Driver: '', Count: -1, Capabilities: [['gpu']] }] }).request.gpus).toBe('all');
    expect(body({ DeviceRequests: [{ Driver: 'nvidia', Count: 2, Capabilities: [['gpu', 'utility']] }] }).request.gpus).toBe('2');
    expect(body({ DeviceRequests: [{ Count: 0, DeviceIDs: ['0', '1'], Capabilities: [['gpu']] }] }).request.gpus).toBe('device=0,1');
    const other = body({ DeviceRequests: [{ Driver: 'fpga', Count: 1, Capabilities: [['fpga']] }], PidMode: 'container:x', IpcMode: 'host' });
    expect(other.warnings).toEqual([
      'HostConfig.DeviceRequests: driver "fpga" with capabilities ["fpga"] is not supported (burrow has CDI devices and the gpu capability) and was ignored',
      'HostConfig.PidMode "container:x" is not supported: the container has a private namespace',
    ]);
    expect([other.request.pid, other.request.ipc]).toEqual([undefined, 'host']);
  });
});
