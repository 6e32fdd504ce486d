//! Keeping the relay's secrets out of core dumps. The environment holds
//! every vendor key and password (systemd's `EnvironmentFile=`), and a
//! watchdog SIGABRT made systemd-coredump record the environment
//! (`COREDUMP_ENVIRON=`) in the system journal, which its groups can read.
//!
//! Guarantees: once [`keep_secrets_out_of_cores`] returned `Ok`, the kernel
//! writes no core of this process and lets no other user read its memory.

/// Marks the process not dumpable (`PR_SET_DUMPABLE` 0).
pub fn keep_secrets_out_of_cores() -> std::io::Result<()> {
    use rustix::process::{DumpableBehavior, set_dumpable_behavior};
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{DumpableBehavior, dumpable_behavior};

    #[test]
    fn the_process_is_no_longer_dumpable() {
        keep_secrets_out_of_cores().unwrap();
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
    }
}
