//! The process's open-file limit. Every WhatsApp session holds a socket (two in a process that
//! also runs the emulator), and the usual soft limit (1,024) is far below what thousands of
//! accounts need while the hard limit allows more: the server raises its soft limit to the hard
//! one at start (issue 19).

/// Open-file limits before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit (the most an unprivileged process may set).
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one.
pub fn raise_to_hard() -> std::io::Result<OpenFileLimit> {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(OpenFileLimit { before, soft, hard })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        // Start below the hard limit (as a shell's default does), when there is room to.
        if soft >= hard && hard > 1 {
            rlimit::setrlimit(rlimit::Resource::NOFILE, hard / 2, hard).unwrap();
        }
        let limit = super::raise_to_hard().unwrap();
        assert_eq!(limit.hard, hard);
        assert_eq!(limit.soft, hard, "{limit:?}");
        assert_eq!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap(), (hard, hard));
    }
}
