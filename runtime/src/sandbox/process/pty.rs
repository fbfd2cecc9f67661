//! The host side of a container's terminal: a pseudo-terminal whose master goes to
//! the engine over `--console-socket` (as runc sends it) and whose slave the sandbox
//! relays to the guest's terminal.

use crate::sandbox::SandboxError;
use nix::pty::{openpty, Winsize};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_int_bad!(set_controlling_tty, libc::TIOCSCTTY);

/// A host pseudo-terminal: the master for the engine, the slave for the relay.
#[derive(Debug)]
pub struct HostPty {
    /// The engine's end.
    pub master: OwnedFd,
    /// The sandbox's end, in raw mode: the guest's terminal does the line discipline.
    pub slave: OwnedFd,
}

impl HostPty {
    /// Opens a pseudo-terminal of `rows` x `cols` (0: the kernel's default).
    pub fn open(rows: u16, cols: u16) -> Result<HostPty, SandboxError> {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).map_err(|e| SandboxError::Io("openpty", e.into()))?;
        let mut attrs =
            tcgetattr(&pty.slave).map_err(|e| SandboxError::Io("tcgetattr", e.into()))?;
        cfmakeraw(&mut attrs);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &attrs)
            .map_err(|e| SandboxError::Io("tcsetattr", e.into()))?;
        Ok(HostPty {
            master: pty.master,
            slave: pty.slave,
        })
    }

    /// Sends the master to the engine listening on `socket`, as runc does: one
    /// `SCM_RIGHTS` message whose payload is the terminal's name.
    pub fn send_master(&self, socket: &Path) -> Result<(), SandboxError> {
        let stream = UnixStream::connect(socket)
            .map_err(|e| SandboxError::ConsoleSocket(socket.to_owned(), e))?;
        let fds = [self.master.as_raw_fd()];
        let name = b"/dev/ptmx";
        sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(name)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| SandboxError::ConsoleSocket(socket.to_owned(), e.into()))?;
        Ok(())
    }

    /// Makes the slave the controlling terminal of this process (which must be a
    /// session leader without one), so that the engine's resizes of the master
    /// arrive as SIGWINCH.
    pub fn control(&self) -> Result<(), SandboxError> {
        // SAFETY: TIOCSCTTY on a descriptor we own, argument 0 (do not steal).
        unsafe { set_controlling_tty(self.slave.as_raw_fd(), 0) }
            .map_err(|e| SandboxError::Io("TIOCSCTTY", e.into()))?;
        Ok(())
    }
}

/// The window size of a terminal, as (rows, cols).
pub fn window_size(fd: impl AsFd) -> Result<(u16, u16), SandboxError> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into the struct we own.
    unsafe { get_winsize(fd.as_fd().as_raw_fd(), &mut size) }
        .map_err(|e| SandboxError::Io("TIOCGWINSZ", e.into()))?;
    Ok((size.ws_row, size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    #[test]
    fn the_master_reaches_the_console_socket_and_sizes_read_back() {
        let dir = std::env::temp_dir().join(format!("husk-pty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let pty = HostPty::open(30, 100).unwrap();
        assert_eq!(window_size(&pty.slave).unwrap(), (30, 100));
        let engine = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let mut buf = [0u8; 64];
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .unwrap();
            let got_fd = msg.cmsgs().unwrap().any(|c| {
                matches!(c, nix::sys::socket::ControlMessageOwned::ScmRights(fds) if fds.len() == 1)
            });
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest);
            got_fd
        });
        pty.send_master(&path).unwrap();
        assert!(engine.join().unwrap(), "no descriptor arrived");
        let err = pty.send_master(&dir.join("absent.sock")).unwrap_err();
        assert!(err.to_string().contains("absent.sock"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
