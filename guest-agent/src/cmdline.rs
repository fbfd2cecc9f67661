//! The agent's settings, read from the kernel command line.
//!
//! The host passes settings as `husk.<name>=<value>` words; the kernel leaves words it
//! does not know for init, and the agent reads them from `/proc/cmdline`.

use std::time::Duration;

/// Settings taken from `husk.*` words of the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentConfig {
    /// `husk.poweroff_after=<seconds>`: end the VM this long after readiness unless
    /// something else ended it first. Absent or `0`: never.
    pub poweroff_after: Option<Duration>,
    /// `husk.share=<tag>`, any number of times: virtio-fs shares to mount at boot
    /// under `/run/husk/shares/<tag>`.
    pub shares: Vec<String>,
}

/// A `husk.*` word the agent could not accept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    /// The value of a known setting does not parse.
    #[error("kernel command line: invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The setting, e.g. `husk.poweroff_after`.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
    /// A `husk.*` word the agent does not know: most likely a typo on the host side.
    #[error("kernel command line: unknown setting {0}")]
    Unknown(String),
}

impl AgentConfig {
    /// Parses the settings out of a whole kernel command line.
    ///
    /// Words that do not start with `husk.` belong to the kernel and are ignored.
    pub fn from_cmdline(cmdline: &str) -> Result<Self, CmdlineError> {
        let mut config = AgentConfig::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some(setting) = word.strip_prefix("husk.") else {
                continue;
            };
            let (name, value) = setting.split_once('=').unwrap_or((setting, ""));
            match name {
                "poweroff_after" => {
                    let secs: u64 = value.parse().map_err(|_| CmdlineError::InvalidValue {
                        key: format!("husk.{name}"),
                        value: value.to_owned(),
                        reason: "expected a whole number of seconds",
                    })?;
                    config.poweroff_after = (secs > 0).then(|| Duration::from_secs(secs));
                }
                "share" => {
                    crate::shares::check_tag(value).map_err(|_| CmdlineError::InvalidValue {
                        key: format!("husk.{name}"),
                        value: value.to_owned(),
                        reason: "expected a virtio-fs tag (1 to 36 of [A-Za-z0-9._-])",
                    })?;
                    if !config.shares.iter().any(|t| t == value) {
                        config.shares.push(value.to_owned());
                    }
                }
                _ => return Err(CmdlineError::Unknown(format!("husk.{name}"))),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_collected_once_each() {
        let config =
            AgentConfig::from_cmdline("husk.share=rootfs quiet husk.share=data husk.share=rootfs")
                .unwrap();
        assert_eq!(config.shares, ["rootfs", "data"]);
        let err = AgentConfig::from_cmdline("husk.share=../etc").unwrap_err();
        assert!(err.to_string().contains("husk.share"), "{err}");
    }

    #[test]
    fn kernel_words_are_ignored() {
        let config = AgentConfig::from_cmdline("console=ttyS0 reboot=t panic=-1 quiet").unwrap();
        assert_eq!(config, AgentConfig::default());
    }

    #[test]
    fn poweroff_after_is_read_in_seconds() {
        let config = AgentConfig::from_cmdline("console=ttyS0 husk.poweroff_after=30").unwrap();
        assert_eq!(config.poweroff_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn poweroff_after_zero_means_never() {
        let config = AgentConfig::from_cmdline("husk.poweroff_after=0").unwrap();
        assert_eq!(config.poweroff_after, None);
    }

    #[test]
    fn bad_value_names_the_setting() {
        let err = AgentConfig::from_cmdline("husk.poweroff_after=soon").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel command line: invalid value \"soon\" for husk.poweroff_after: \
             expected a whole number of seconds"
        );
        let err = AgentConfig::from_cmdline("husk.poweroff_after").unwrap_err();
        assert!(matches!(err, CmdlineError::InvalidValue { .. }));
    }

    #[test]
    fn unknown_husk_setting_is_refused() {
        let err = AgentConfig::from_cmdline("husk.powerof_after=3").unwrap_err();
        assert_eq!(err, CmdlineError::Unknown("husk.powerof_after".into()));
    }
}
