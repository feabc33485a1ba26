/**
 * The default seccomp profile. Docker's default allows about 350 system calls and blocks the
 * rest; what it blocks that matters is the kernel-administration and namespace-escaping set
 * below, which this profile denies with EPERM as Docker does (so programs that probe for them
 * degrade gracefully). Everything else is allowed: a rootless container's user namespace already
 * withholds the capabilities the remaining calls would need.
 */
export const DENIED_SYSCALLS = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'clock_settime64', 'create_module', 'delete_module',
  'finit_module', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'get_mempolicy', 'init_module',
  'ioperm', 'iopl', 'kcmp', 'kexec_file_load', 'kexec_load', 'keyctl', 'lookup_dcookie', 'mbind', 'mount',
  'mount_setattr', 'move_mount', 'move_pages', 'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'open_tree',
  'perf_event_open', 'pivot_root', 'process_vm_readv', 'process_vm_writev', 'ptrace', 'query_module', 'quotactl',
  'quotactl_fd', 'reboot', 'request_key', 'set_mempolicy', 'setns', 'settimeofday', 'stime', 'swapoff', 'swapon',
  'sysfs', '_sysctl', 'umount', 'umount2', 'unshare', 'uselib', 'userfaultfd', 'ustat', 'vm86', 'vm86old',
] as const;

/** Every architecture a container's calls may come from (a filter kills calls of those it does not name). */
export const SECCOMP_ARCHITECTURES = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];

export function defaultSeccomp(): object {
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: [...SECCOMP_ARCHITECTURES],
    syscalls: [{ names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
  };
}
