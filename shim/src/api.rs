//! containerd's Task API (ttrpc) on top of [`Service`]: requests mapped to its
//! calls, results to responses, errors to ttrpc statuses. Methods husk does not
//! implement yet answer UNIMPLEMENTED with a message saying so.

use crate::error::ShimError;
use crate::rootfs::RootfsMount;
use crate::service::{CreateParams, Service};
use crate::stdio::StdioPaths;
use crate::task::{TaskRecord, TaskStatus};
use containerd_shim::api;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use std::path::PathBuf;

/// The version Connect reports.
const VERSION: &str = concat!("husk ", env!("CARGO_PKG_VERSION"));

/// The parameters of a Create request.
pub fn create_params(req: &api::CreateTaskRequest) -> CreateParams {
    CreateParams {
        id: req.id.clone(),
        bundle: PathBuf::from(&req.bundle),
        rootfs: req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                fstype: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect(),
        terminal: req.terminal,
        stdio: StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        },
        checkpoint: req.checkpoint.clone(),
    }
}

/// Exec ids name processes the shim does not run (exec is not supported yet).
fn no_exec(id: &str, exec_id: &str) -> Result<(), ShimError> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        Err(ShimError::NoSuchExec {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        })
    }
}

/// The State response for `task`.
pub fn state_response(task: &TaskRecord) -> api::StateResponse {
    let status = match task.status() {
        TaskStatus::Created => api::Status::CREATED,
        TaskStatus::Running => api::Status::RUNNING,
        TaskStatus::Stopped => api::Status::STOPPED,
    };
    let exit = task.exit.get();
    api::StateResponse {
        id: task.id.clone(),
        bundle: task.bundle.display().to_string(),
        pid: task.pid,
        status: status.into(),
        stdin: task.stdio.stdin.clone(),
        stdout: task.stdio.stdout.clone(),
        stderr: task.stdio.stderr.clone(),
        terminal: false,
        exit_status: exit.as_ref().map_or(0, |e| e.status),
        exited_at: exit.map(|e| e.at).into(),
        ..Default::default()
    }
}

fn unsupported<T>(what: &'static str) -> TtrpcResult<T> {
    Err(ShimError::Unsupported(what).into())
}

impl Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        tracing::info!("create {} (bundle {})", req.id, req.bundle);
        let pid = Service::create(self, create_params(&req))?;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        tracing::info!("start {}", req.id);
        no_exec(&req.id, &req.exec_id)?;
        let pid = Service::start(self, &req.id)?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        no_exec(&req.id, &req.exec_id)?;
        Ok(state_response(self.task(&req.id)?.as_ref()))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        tracing::info!("kill {} signal {} all {}", req.id, req.signal, req.all);
        no_exec(&req.id, &req.exec_id)?;
        Service::kill(self, &req.id, req.signal, req.all)?;
        Ok(api::Empty::default())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        tracing::info!("delete {}", req.id);
        no_exec(&req.id, &req.exec_id)?;
        let (pid, exited) = Service::delete(self, &req.id)?;
        Ok(api::DeleteResponse {
            pid,
            exit_status: exited.status,
            exited_at: MessageField::some(exited.at),
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        no_exec(&req.id, &req.exec_id)?;
        let exited = Service::wait(self, &req.id)?;
        Ok(api::WaitResponse {
            exit_status: exited.status,
            exited_at: MessageField::some(exited.at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let processes = Service::pids(self, &req.id)?
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task = self.task(&req.id).ok().or_else(|| self.any_task());
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: task.map_or(0, |t| t.pid),
            version: VERSION.to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        Service::shutdown(self);
        Ok(api::Empty::default())
    }

    fn exec(&self, _ctx: &TtrpcContext, _req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        unsupported("Exec (running another process in a task)")
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        unsupported("ResizePty (terminals)")
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        no_exec(&req.id, &req.exec_id)?;
        if req.stdin {
            Service::close_stdin(self, &req.id)?;
        }
        Ok(api::Empty::default())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        _req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        unsupported("Stats (task metrics)")
    }

    fn pause(&self, _ctx: &TtrpcContext, _req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        unsupported("Pause (freezing a task's microVM)")
    }

    fn resume(&self, _ctx: &TtrpcContext, _req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        unsupported("Resume (thawing a task's microVM)")
    }

    fn update(&self, _ctx: &TtrpcContext, _req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        unsupported("Update (changing a running microVM's resources)")
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        unsupported("Checkpoint (checkpoint/restore)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::types::mount::Mount;

    #[test]
    fn create_requests_map_to_params() {
        let req = api::CreateTaskRequest {
            id: "c1".into(),
            bundle: "/run/containerd/io.containerd.runtime.v2.task/default/c1".into(),
            rootfs: vec![Mount {
                type_: "overlay".into(),
                source: "overlay".into(),
                options: vec!["index=off".into(), "lowerdir=/l".into()],
                ..Default::default()
            }],
            stdin: "".into(),
            stdout: "/run/fifo/c1-stdout".into(),
            stderr: "/run/fifo/c1-stderr".into(),
            ..Default::default()
        };
        let p = create_params(&req);
        assert_eq!(p.id, "c1");
        assert_eq!(
            p.bundle,
            PathBuf::from("/run/containerd/io.containerd.runtime.v2.task/default/c1")
        );
        assert_eq!(
            p.rootfs,
            vec![RootfsMount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec!["index=off".into(), "lowerdir=/l".into()],
            }]
        );
        assert!(!p.terminal);
        assert_eq!(p.stdio.stdin, "");
        assert_eq!(p.stdio.stdout, "/run/fifo/c1-stdout");
    }

    #[test]
    fn exec_ids_are_refused_as_not_found() {
        assert!(no_exec("c1", "").is_ok());
        let err = no_exec("c1", "e1").unwrap_err();
        assert_eq!(err.code(), containerd_shim::protos::ttrpc::Code::NOT_FOUND);
        assert!(err.to_string().contains("\"e1\""), "{err}");
    }
}
