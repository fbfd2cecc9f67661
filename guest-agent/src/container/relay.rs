//! Copying an attached stream between its pipe (or terminal) and a connection.
//!
//! Buffers are fixed ([`CHUNK`]); a side that does not keep up blocks the other:
//! the process blocks on a full pipe, the host on a full socket.

use super::stdio::Attached;
use crate::server::Connection;
use std::io::{self, Read, Write};
use std::net::Shutdown;

/// The relay's buffer size.
pub const CHUNK: usize = 32 << 10;

/// Relays one attached stream until it ends:
///
/// - output (`stdout`, `stderr`): until the pipe's end of file (every writer closed
///   it), then the connection's write side is shut down;
/// - input (`stdin`): until the host shuts down its write side (or closes), then the
///   pipe's write end is closed; also ends when the process no longer reads stdin;
/// - `pty`: both ways, until the terminal has no process left (the slave side is
///   closed everywhere); then the connection is shut down both ways.
pub fn relay<C: Connection>(mut conn: C, attached: Attached) -> io::Result<()> {
    match attached {
        Attached::Output(mut pipe) => {
            copy(&mut pipe, &mut conn)?;
            conn.shutdown(Shutdown::Write)
        }
        Attached::Input(pipe) => match copy(&mut conn, &mut &*pipe) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        },
        Attached::Pty(mut master) => {
            let mut input = conn.try_clone()?;
            let mut input_master = master.try_clone()?;
            std::thread::scope(|scope| {
                let typing = std::thread::Builder::new()
                    .name("agent-pty-in".into())
                    .spawn_scoped(scope, move || copy(&mut input, &mut input_master))?;
                let out = copy(&mut master, &mut conn);
                // Ends the input side too: its read returns end of file.
                let _ = conn.shutdown(Shutdown::Both);
                match typing.join() {
                    // The terminal went away under the input side: not an error.
                    Ok(Err(e)) if e.raw_os_error() != Some(nix::libc::EIO) => Err(e),
                    _ => out,
                }
            })
        }
    }
}

/// Copies until end of file; a terminal master's `EIO` (no slave left) counts as end
/// of file.
fn copy<R: Read, W: Write>(from: &mut R, to: &mut W) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => return Ok(()),
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
    }
}
