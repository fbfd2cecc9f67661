//! Every verb, on the same two failures: a container in a state where the verb does
//! not apply is an invalid state, and a VM whose agent cannot be reached is an agent
//! failure naming the verb. The CLI prints these and exits 1; the shim maps their
//! kind to a ttrpc code (`shim/src/error.rs` tests that mapping).

use super::*;
use crate::error::{ErrorKind, RuntimeError};
use crate::state::tests::{sample, store};
use crate::state::{process_start_time, ProcessState, Status, Store};
use serde_json::json;

/// Every verb that acts on an existing container, by name.
/// A verb run on a store and a container id.
type Verb = Box<dyn Fn(&Store, &str) -> Result<(), RuntimeError>>;

fn verbs() -> Vec<(&'static str, Verb)> {
    let exec = ExecOptions {
        process: json!({"args": ["true"]}),
        tty: false,
        detach: true,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
        stdio: None,
        exec_id: None,
    };
    vec![
        ("start", Box::new(start::start)),
        (
            "kill",
            Box::new(|s, id| kill::kill(s, id, Signal::TERM, false)),
        ),
        ("pause", Box::new(pause::pause)),
        ("resume", Box::new(pause::resume)),
        ("update", Box::new(|s, id| update::apply(s, id, json!({})))),
        ("ps", Box::new(|s, id| ps::ps(s, id).map(drop))),
        ("events", Box::new(|s, id| events::stats(s, id).map(drop))),
        (
            "exec",
            Box::new(move |s, id| exec::exec_detached(s, id, &exec).map(drop)),
        ),
        ("delete", Box::new(|s, id| delete::delete(s, id, false))),
    ]
}

/// The status in which `verb` applies.
fn applies_in(verb: &str) -> Status {
    match verb {
        "start" => Status::Created,
        "resume" => Status::Paused,
        _ => Status::Running,
    }
}

/// Puts container `id` in `store` with `status` and a live process (this test's own
/// process: any live pid whose start time matches will do).
fn put(store: &Store, id: &str, status: Status) {
    let me = std::process::id() as i32;
    let ProcessState::Alive { start_time } = process_start_time(me) else {
        panic!("this process is not alive?")
    };
    let mut state = sample(id);
    state.status = status;
    state.pid = Some(me);
    state.pid_start_time = Some(start_time);
    drop(store.create(&state).unwrap());
}

#[test]
fn a_stopped_container_is_an_invalid_state_for_every_verb() {
    let (_dir, store) = store();
    for (verb, run) in verbs() {
        if verb == "delete" {
            continue; // a stopped container is what delete is for
        }
        let mut state = sample("c1");
        state.status = Status::Stopped;
        drop(store.create(&state).unwrap());
        let err = run(&store, "c1").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidState, "{verb}: {err}");
        assert!(
            matches!(err, RuntimeError::InvalidState(_)),
            "{verb}: {err}"
        );
        store.remove("c1").unwrap();
    }
}

#[test]
fn a_running_container_is_an_invalid_state_for_delete_without_force() {
    let (_dir, store) = store();
    put(&store, "c1", Status::Running);
    let err = delete::delete(&store, "c1", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
}

#[test]
fn an_unreachable_agent_is_an_agent_failure_for_every_verb() {
    let (_dir, store) = store();
    for (verb, run) in verbs() {
        if verb == "delete" || verb == "exec" {
            // delete needs no agent; a detached exec reaches it from its relay
            // process, which reports the failure as text (SandboxReport).
            continue;
        }
        put(&store, "c1", applies_in(verb));
        let err = run(&store, "c1").unwrap_err();
        let RuntimeError::Agent {
            action, container, ..
        } = &err
        else {
            panic!("{verb}: not an agent failure: {err}");
        };
        assert_eq!(container, "c1");
        assert_eq!(err.kind(), ErrorKind::Internal, "{verb}: {err}");
        let text = husk_protocol::error_chain(&err);
        assert!(
            text.starts_with(&format!("cannot {action} container \"c1\": agent socket")),
            "{verb}: {text}"
        );
        store.remove("c1").unwrap();
    }
}
