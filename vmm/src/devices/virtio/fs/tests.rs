//! Tests of the virtio-fs device: against a scripted vhost-user backend for the
//! negotiation and hang-up paths, and against the real virtiofsd (when
//! `HUSK_VIRTIOFSD` names it) for the whole activation.

use super::*;
use crate::virtiofsd::{Virtiofsd, VirtiofsdConfig};
use crate::vstate::memory::create_guest_ram;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

const GET_FEATURES: u32 = 1;
const GET_PROTOCOL_FEATURES: u32 = 15;
/// The last message of the negotiation: the script ends there, the backend "dies".
const SET_PROTOCOL_FEATURES: u32 = 16;
/// Header flags of a reply: version 1, reply bit.
const REPLY_FLAGS: u32 = 0x1 | 0x4;
const BACKEND_FEATURES: u64 = VIRTIO_F_VERSION_1
    | (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX)
    | (1 << 30) // VHOST_USER_F_PROTOCOL_FEATURES
    | (1 << 40); // a feature husk does not know

/// A backend that answers the feature queries of [`Fs::with_stream`], records the
/// requests it saw, and hangs up when the socket's other end closes or at `hang_up`.
fn scripted_backend(mut sock: UnixStream) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        loop {
            let mut hdr = [0u8; 12];
            if sock.read_exact(&mut hdr).is_err() {
                return seen;
            }
            let request = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
            let size = u32::from_le_bytes(hdr[8..12].try_into().unwrap());
            let mut body = vec![0u8; size as usize];
            if sock.read_exact(&mut body).is_err() {
                return seen;
            }
            seen.push(request);
            let value = match request {
                GET_FEATURES => BACKEND_FEATURES,
                GET_PROTOCOL_FEATURES => 0x3f,
                SET_PROTOCOL_FEATURES => return seen,
                _ => continue,
            };
            let mut reply = Vec::new();
            reply.extend_from_slice(&request.to_le_bytes());
            reply.extend_from_slice(&REPLY_FLAGS.to_le_bytes());
            reply.extend_from_slice(&8u32.to_le_bytes());
            reply.extend_from_slice(&value.to_le_bytes());
            sock.write_all(&reply).unwrap();
        }
    })
}

#[test]
fn tags_must_fit_the_configuration_space() {
    for tag in ["", &"t".repeat(MAX_TAG_LEN + 1)] {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let err = Fs::with_stream(ours, "test".into(), tag).unwrap_err();
        assert!(matches!(err, FsError::Tag(_)), "{err}");
    }
}

#[test]
fn negotiation_offers_only_ring_features_and_a_tagged_config() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let backend = scripted_backend(theirs);
    let fs = Fs::with_stream(ours, "test".into(), "rootfs").unwrap();
    let seen = backend.join().unwrap();
    // SET_OWNER (3), GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES.
    assert_eq!(
        seen,
        [
            3,
            GET_FEATURES,
            GET_PROTOCOL_FEATURES,
            SET_PROTOCOL_FEATURES
        ]
    );
    assert_eq!(fs.device_type(), TYPE_FS);
    assert_eq!(
        fs.avail_features(),
        VIRTIO_F_VERSION_1 | (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX)
    );
    let mut config = [0xffu8; MAX_TAG_LEN + 8];
    fs.read_config(0, &mut config);
    assert_eq!(&config[..6], b"rootfs");
    assert!(config[6..MAX_TAG_LEN].iter().all(|&b| b == 0));
    // num_request_queues, then zeros past the end of the space.
    assert_eq!(&config[MAX_TAG_LEN..MAX_TAG_LEN + 4], &1u32.to_le_bytes());
    assert_eq!(&config[MAX_TAG_LEN + 4..], &[0u8; 4]);
}

#[test]
fn a_backend_that_hangs_up_is_a_failure_naming_the_share() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let backend = scripted_backend(theirs);
    let mut fs = Fs::with_stream(ours, "test".into(), "rootfs").unwrap();
    backend.join().unwrap(); // its socket end is closed now
    assert_eq!(fs.backend_failure(), None);
    fs.process_backend();
    let failure = fs.backend_failure().expect("hang-up noticed");
    assert!(failure.contains("\"rootfs\""), "{failure}");
    // A failed device refuses to start instead of hanging the guest.
    let ram = create_guest_ram(64).unwrap();
    let interrupt = Arc::new(VirtioInterrupt::new(EventFd::new(0).unwrap()));
    assert!(fs.activate(ram.memory, Vec::new(), interrupt).is_err());
}

#[test]
fn a_backend_that_is_still_there_is_no_failure() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let backend = scripted_backend(theirs.try_clone().unwrap());
    let mut fs = Fs::with_stream(ours, "test".into(), "rootfs").unwrap();
    backend.join().unwrap();
    // `theirs` is still open: a spurious wake-up is not a hang-up.
    fs.process_backend();
    assert_eq!(fs.backend_failure(), None);
    drop(theirs);
}

/// A backend that writes what nobody asked for ends the device, rather than leaving
/// the bytes to wake the VMM's event loop forever.
#[test]
fn a_backend_that_writes_unasked_is_a_failure() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let backend = scripted_backend(theirs.try_clone().unwrap());
    let mut fs = Fs::with_stream(ours, "test".into(), "rootfs").unwrap();
    backend.join().unwrap();
    (&theirs).write_all(b"garbage").unwrap();
    fs.process_backend();
    let failure = fs.backend_failure().expect("unasked bytes noticed");
    assert!(failure.contains("not asked for"), "{failure}");
    assert!(failure.contains("\"rootfs\""), "{failure}");
    drop(theirs);
}

/// A ready queue of 16 entries with its rings at `base` in guest memory.
fn ready_queue(base: u64) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(16);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some((base + 0x1000) as u32), Some(0));
    q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
    q.set_ready(true);
    q
}

/// With the real virtiofsd: the whole activation is accepted, interrupts stay
/// pending for the driver, a reset stops the rings, and killing virtiofsd is noticed.
#[test]
fn the_real_virtiofsd_takes_memory_and_rings() {
    let Some(binary) = std::env::var_os("HUSK_VIRTIOFSD").map(PathBuf::from) else {
        eprintln!("HUSK_VIRTIOFSD not set: skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("husk-fs-dev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("share")).unwrap();
    let (mut daemon, stream) = Virtiofsd::start(&VirtiofsdConfig {
        binary,
        shared_dir: dir.join("share"),
        socket: dir.join("fs.sock"),
        start_timeout: Duration::from_secs(10),
        cache: "auto".into(),
        layout: None,
    })
    .unwrap();
    let mut fs = Fs::with_stream(stream, "fs.sock".into(), "rootfs").unwrap();
    let kicks: Vec<EventFd> = (0..NUM_QUEUES).map(|_| EventFd::new(0).unwrap()).collect();
    assert!(fs.takes_queue_eventfds(&kicks).unwrap());
    fs.ack_features(fs.avail_features());
    let ram = create_guest_ram(64).unwrap();
    let interrupt = Arc::new(VirtioInterrupt::new(EventFd::new(0).unwrap()));
    let queues = vec![ready_queue(0x10_0000), ready_queue(0x20_0000)];
    fs.activate(ram.memory.clone(), queues, interrupt.clone())
        .unwrap_or_else(|e| panic!("activate: {e}; virtiofsd: {}", daemon.stderr_tail()));
    assert_eq!(interrupt.status() & INT_VRING, INT_VRING);
    interrupt.ack(INT_VRING);
    assert_eq!(interrupt.status() & INT_VRING, INT_VRING, "sticky");
    fs.reset();
    assert_eq!(interrupt.status(), 0);

    let pid = nix::unistd::Pid::from_raw(daemon.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(daemon.wait_exit(Duration::from_secs(5)).is_some());
    // Its sandboxed child holds the socket a moment longer: wait for the hang-up as
    // the event loop does.
    let mut poll = [libc::pollfd {
        fd: fs.backend_fd().unwrap(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one pollfd we own, its length passed; the result is checked.
    let ready = unsafe { libc::poll(poll.as_mut_ptr(), 1, 5000) };
    assert_eq!(ready, 1, "no hang-up within 5 s");
    fs.process_backend();
    assert!(fs.backend_failure().is_some());
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}
