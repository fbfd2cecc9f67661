//! The VMM's hybrid vsock: `CONNECT <port>\n`, answered `OK <hostport>\n`.

use super::deadline::Deadline;
use super::ClientError;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The longest `OK` line accepted.
const MAX_LINE: usize = 64;

/// Connects to guest vsock `port` through the sandbox's Unix socket at `uds_path`;
/// afterwards the stream carries the guest connection's bytes.
pub fn connect_port(
    uds_path: &Path,
    port: u32,
    timeout: Duration,
) -> Result<UnixStream, ClientError> {
    let mut stream = UnixStream::connect(uds_path).map_err(|source| {
        let path = uds_path.to_owned();
        if source.kind() == io::ErrorKind::NotFound {
            ClientError::SocketMissing { path, source }
        } else {
            ClientError::Socket { path, source }
        }
    })?;
    let mut io = Deadline {
        stream: &mut stream,
        deadline: Instant::now() + timeout,
    };
    let during = "CONNECT";
    let refused = |e: io::Error| match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            ClientError::ConnectRefused { port }
        }
        _ => ClientError::from_io(e, during, timeout),
    };
    io.write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(refused)?;
    // Byte by byte: nothing after the newline may be consumed.
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        let mut byte = [0u8];
        match io.read(&mut byte) {
            Ok(0) if line.is_empty() => return Err(ClientError::ConnectRefused { port }),
            Ok(0) => {
                return Err(ClientError::Unexpected {
                    during,
                    detail: format!("connection closed after {:?}", lossy(&line)),
                })
            }
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_LINE => {
                return Err(ClientError::Unexpected {
                    during,
                    detail: format!("no newline in the first {MAX_LINE} bytes"),
                })
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(refused(e)),
        }
    }
    let text = lossy(&line);
    let ok = text
        .strip_prefix("OK ")
        .is_some_and(|p| p.trim_end_matches('\r').parse::<u32>().is_ok());
    if !ok {
        return Err(ClientError::Unexpected {
            during,
            detail: format!("expected `OK <port>`, got {text:?}"),
        });
    }
    Ok(stream)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
