//! Whether an unprivileged user may create user namespaces. Three distributions, three knobs:
//! the upstream `user.max_user_namespaces`, Debian's old `kernel.unprivileged_userns_clone`, and
//! Ubuntu 23.10+'s AppArmor restriction. The sysctls are evidence; the decisive test is creating
//! one, which the probe's helper process does (see `nstest`).

use serde::Serialize;

use crate::sysfs;

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsernsSysctls {
    pub max_user_namespaces: Option<u64>,
    /// Debian/Ubuntu patch; absent on mainline kernels.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's AppArmor switch; absent elsewhere.
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
}

pub fn read_sysctls() -> UsernsSysctls {
    UsernsSysctls {
        max_user_namespaces: sysfs::read_u64("/proc/sys/user/max_user_namespaces"),
        unprivileged_userns_clone: sysfs::read_u64("/proc/sys/kernel/unprivileged_userns_clone"),
        apparmor_restrict_unprivileged_userns: sysfs::read_u64("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
    }
}

/// What the sysctls alone say for a user: `None` when they allow it, else the blocking knob and its fix.
pub fn sysctl_blocker(s: &UsernsSysctls, is_root: bool) -> Option<(String, String)> {
    if s.max_user_namespaces == Some(0) {
        return Some((
            "user.max_user_namespaces is 0".into(),
            "an administrator must run `sysctl -w user.max_user_namespaces=28633` and persist it in /etc/sysctl.d/".into(),
        ));
    }
    if is_root {
        return None;
    }
    if s.unprivileged_userns_clone == Some(0) {
        return Some((
            "kernel.unprivileged_userns_clone is 0".into(),
            "an administrator must run `sysctl -w kernel.unprivileged_userns_clone=1` and persist it in /etc/sysctl.d/".into(),
        ));
    }
    if s.apparmor_restrict_unprivileged_userns == Some(1) {
        return Some((
            "kernel.apparmor_restrict_unprivileged_userns is 1".into(),
            "an administrator must allow `userns` for burrow-runtime with an AppArmor profile, or set kernel.apparmor_restrict_unprivileged_userns=0".into(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockers() {
        let mut s = UsernsSysctls { max_user_namespaces: Some(15000), ..Default::default() };
        assert_eq!(sysctl_blocker(&s, false), None);
        s.unprivileged_userns_clone = Some(0);
        assert!(sysctl_blocker(&s, false).unwrap().0.contains("unprivileged_userns_clone"));
        assert_eq!(sysctl_blocker(&s, true), None, "root is not subject to the Debian knob");
        s.unprivileged_userns_clone = Some(1);
        s.apparmor_restrict_unprivileged_userns = Some(1);
        assert!(sysctl_blocker(&s, false).unwrap().1.contains("AppArmor"));
        s.max_user_namespaces = Some(0);
        assert!(sysctl_blocker(&s, true).unwrap().0.contains("max_user_namespaces"));
    }
}
