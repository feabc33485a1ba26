import type { HostReport } from '../../ts/host/report';

/** A report as a hybrid-cgroup host without subordinate ids would produce. */
export function sampleReport(): HostReport {
  return {
    schemaVersion: 1,
    uid: 1000,
    gid: 1000,
    rootless: true,
    kernel: { release: '6.1.0-13-amd64', version: [6, 1, 0], rootlessOverlay: true, clone3: true, cloneIntoCgroup: true, idmappedMounts: true },
    userns: { maxUserNamespaces: 15000, unprivilegedUsernsClone: null, apparmorRestrictUnprivilegedUserns: null, created: true, error: null },
    idmap: {
      user: 'alice', uid: 1000, gid: 1000, subuid: [], subgid: [], source: 'files',
      newuidmap: { path: '/usr/bin/newuidmap', privilege: 'setuid', usable: true },
      newgidmap: { path: '/usr/bin/newgidmap', privilege: 'setuid', usable: true },
      mode: 'single', reason: 'no range in /etc/subuid', containerIds: 1, suggested: { start: 200000, count: 65536 },
    },
    storage: {
      root: '/home/alice/.local/share/burrow', examined: '/home/alice', fsType: 'ext4', fsMagic: '0xef53', networkFs: false, writable: true,
      fuseOverlayfs: null, fuseOverlayfsVersion: null, devFuseUsable: false, nativeOverlay: true, nativeOverlayError: null, driver: 'overlay', reason: 'tested', local: null,
    },
    network: { slirp4netns: null, pasta: null, devNetTunExists: true, devNetTunUsable: true, devNetTunMode: '0666', defaultMode: 'none', reason: 'neither' },
    cgroups: {
      mode: 'hybrid', v2Mount: '/sys/fs/cgroup/unified', v1Controllers: ['memory'], ownCgroup: '/', delegationRoot: null, delegationSource: 'none',
      availableControllers: [], delegatedControllers: [], systemdUserManager: false, systemdUserManagerWhyNot: 'no session bus', busAddress: null, manager: 'none', enforceable: [], notEnforceable: ['memory'],
    },
    runtimeDir: { xdgRuntimeDir: null, usable: false, problem: 'XDG_RUNTIME_DIR is not set', chosen: '/tmp/burrow-run-1000' },
    runtimeBinary: { path: '/x/burrow-runtime', ran: true, error: null },
    checks: [
      { id: 'kernel', title: 'Kernel', verdict: 'ok', evidence: '6.1.0-13-amd64' },
      { id: 'userns.create', title: 'User namespace created', verdict: 'ok', evidence: 'created' },
      { id: 'cgroups.limits', title: 'Enforceable limits', verdict: 'warn', evidence: 'enforced: none', fix: 'delegate' },
    ],
    canRunContainers: true,
  };
}
