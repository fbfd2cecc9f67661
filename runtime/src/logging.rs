//! Log lines as runc writes them, so that podman, conmon and containerd (which read
//! the runtime's `--log` file) show husk's real errors.
//!
//! - text: `time="2024-05-01T10:00:00.123Z" level=error msg="container \"x\" does not exist"`
//! - json: `{"level":"error","msg":"container \"x\" does not exist","time":"2024-05-01T10:00:00.123Z"}`
//!
//! Without `--log` the lines go to stderr. Warnings and errors are always written;
//! `--debug` adds info and debug lines.

use crate::cli::LogFormat;
use crate::error::RuntimeError;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Where the log goes; kept by `main` to report the final error.
#[derive(Debug, Clone)]
pub struct Logging {
    file: Option<PathBuf>,
}

impl Logging {
    /// Installs the global subscriber. Fails if `--log` cannot be opened.
    pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) -> Result<Self, RuntimeError> {
        let writer: Box<dyn Write + Send> = match log {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| RuntimeError::io(format!("open log {}", path.display()), e))?,
            ),
            None => Box::new(std::io::stderr()),
        };
        let max = if debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::WARN
        };
        let layer = LineLayer {
            writer: Arc::new(Mutex::new(writer)),
            format,
        }
        .with_filter(max);
        // A second init (tests) keeps the first subscriber; that is fine.
        let _ = tracing_subscriber::registry().with(layer).try_init();
        Ok(Logging {
            file: log.map(Path::to_path_buf),
        })
    }

    /// Reports the error that ends `husk COMMAND`: as an `error` line in the log
    /// file (if any), and on stderr as `husk COMMAND: <message>`.
    pub fn report_error(&self, command: &str, message: &str) {
        if self.file.is_some() {
            tracing::error!("{message}");
        }
        eprintln!("husk {command}: {message}");
    }
}

struct LineLayer {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let line = format_line(
            self.format,
            *event.metadata().level(),
            &format!("{}{}", visitor.message, visitor.fields),
            &now_rfc3339(),
        );
        if let Ok(mut w) = self.writer.lock() {
            // A log that cannot be written must not turn into another error.
            let _ = w.write_all(line.as_bytes());
            let _ = w.flush();
        }
    }
}

/// Collects the `message` field, then ` key=value` for every other field.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// The current time, RFC 3339 in UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// One log line, newline included, in runc's (logrus's) formats.
pub fn format_line(format: LogFormat, level: Level, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let obj = serde_json::json!({"level": level_name(level), "msg": msg, "time": time});
            format!("{obj}\n")
        }
        LogFormat::Text => format!(
            "time={} level={} msg={}\n",
            quote(time),
            level_name(level),
            quote(msg)
        ),
    }
}

/// Double-quotes `s` as logfmt does: `\` and `"` escaped, control characters as
/// `\n`, `\t` or `\u{..}`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_is_runc_shaped() {
        let line = format_line(
            LogFormat::Json,
            Level::ERROR,
            "container \"x\" does not exist",
            "T",
        );
        assert!(line.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert_eq!(v["time"], "T");
        assert!(line.starts_with("{\"level\":\"error\",\"msg\":"), "{line}");
    }

    #[test]
    fn text_line_quotes_and_escapes() {
        let line = format_line(LogFormat::Text, Level::WARN, "a \"b\"\nc\\", "T");
        assert_eq!(
            line,
            "time=\"T\" level=warning msg=\"a \\\"b\\\"\\nc\\\\\"\n"
        );
    }

    #[test]
    fn time_is_rfc3339() {
        let t = now_rfc3339();
        assert!(
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).is_ok(),
            "{t}"
        );
    }
}
