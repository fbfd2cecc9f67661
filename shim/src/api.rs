//! containerd's Task API (ttrpc) on top of [`Service`]: requests mapped to its
//! calls (an exec id selects an exec'd process), results to responses, errors to
//! ttrpc statuses. Methods husk does not implement yet answer UNIMPLEMENTED with a
//! message saying so.

use crate::error::ShimError;
use crate::rootfs::RootfsMount;
use crate::service::ExecParams;
use crate::service::{CreateParams, Service};
use crate::stdio::StdioPaths;
use crate::task::{ExecRecord, TaskRecord, TaskStatus};
use containerd_shim::api;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

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

/// The parameters of an Exec request.
pub fn exec_params(req: &api::ExecProcessRequest) -> ExecParams {
    ExecParams {
        id: req.id.clone(),
        exec_id: req.exec_id.clone(),
        spec: req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default(),
        terminal: req.terminal,
        stdio: StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        },
    }
}

/// The State response for exec'd process `exec` of `task`.
pub fn exec_state_response(task: &TaskRecord, exec: &ExecRecord) -> api::StateResponse {
    let exit = exec.exit.get();
    api::StateResponse {
        id: task.id.clone(),
        exec_id: exec.exec_id.clone(),
        bundle: task.bundle.display().to_string(),
        pid: exec.pid.load(Ordering::SeqCst),
        status: api_status(exec.status()).into(),
        stdin: exec.stdio.stdin.clone(),
        stdout: exec.stdio.stdout.clone(),
        stderr: exec.stdio.stderr.clone(),
        terminal: exec.terminal,
        exit_status: exit.as_ref().map_or(0, |e| e.status),
        exited_at: exit.map(|e| e.at).into(),
        ..Default::default()
    }
}

fn api_status(status: TaskStatus) -> api::Status {
    match status {
        TaskStatus::Created => api::Status::CREATED,
        TaskStatus::Running => api::Status::RUNNING,
        TaskStatus::Paused => api::Status::PAUSED,
        TaskStatus::Stopped => api::Status::STOPPED,
    }
}

/// The State response for `task`.
pub fn state_response(task: &TaskRecord) -> api::StateResponse {
    let status = api_status(task.status());
    let exit = task.exit.get();
    api::StateResponse {
        id: task.id.clone(),
        bundle: task.bundle.display().to_string(),
        pid: task.pid,
        status: status.into(),
        stdin: task.stdio.stdin.clone(),
        stdout: task.stdio.stdout.clone(),
        stderr: task.stdio.stderr.clone(),
        terminal: task.terminal,
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
        tracing::info!("start {} {}", req.id, req.exec_id);
        let pid = if req.exec_id.is_empty() {
            Service::start(self, &req.id)?
        } else {
            self.exec_start(&req.id, &req.exec_id)?
        };
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
        if req.exec_id.is_empty() {
            return Ok(state_response(self.task(&req.id)?.as_ref()));
        }
        let (task, exec) = self.exec_of(&req.id, &req.exec_id)?;
        Ok(exec_state_response(&task, &exec))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        tracing::info!(
            "kill {} {} signal {} all {}",
            req.id,
            req.exec_id,
            req.signal,
            req.all
        );
        if req.exec_id.is_empty() {
            Service::kill(self, &req.id, req.signal, req.all)?;
        } else {
            self.exec_kill(&req.id, &req.exec_id, req.signal)?;
        }
        Ok(api::Empty::default())
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        tracing::info!("delete {} {}", req.id, req.exec_id);
        let (pid, exited) = if req.exec_id.is_empty() {
            Service::delete(self, &req.id)?
        } else {
            self.exec_delete(&req.id, &req.exec_id)?
        };
        Ok(api::DeleteResponse {
            pid,
            exit_status: exited.status,
            exited_at: MessageField::some(exited.at),
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let exited = if req.exec_id.is_empty() {
            Service::wait(self, &req.id)?
        } else {
            let (_task, exec) = self.exec_of(&req.id, &req.exec_id)?;
            exec.exit
                .wait(None)
                .ok_or_else(|| ShimError::Finished(req.exec_id.clone()))?
        };
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

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        tracing::info!("exec {} {}", req.id, req.exec_id);
        self.exec_add(exec_params(&req))?;
        Ok(api::Empty::default())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        tracing::debug!(
            "resize {} {} to {}x{}",
            req.id,
            req.exec_id,
            req.width,
            req.height
        );
        Service::resize_pty(self, &req.id, &req.exec_id, req.width, req.height)?;
        Ok(api::Empty::default())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        if req.stdin {
            if req.exec_id.is_empty() {
                Service::close_stdin(self, &req.id)?;
            } else {
                let (_task, exec) = self.exec_of(&req.id, &req.exec_id)?;
                exec.stdin_writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
            }
        }
        Ok(api::Empty::default())
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let metrics = Service::metrics(self, &req.id)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(metrics),
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        tracing::info!("pause {}", req.id);
        Service::pause(self, &req.id)?;
        Ok(api::Empty::default())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        tracing::info!("resume {}", req.id);
        Service::resume(self, &req.id)?;
        Ok(api::Empty::default())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        tracing::info!("update {}", req.id);
        let resources = req.resources.as_ref().map(|a| a.value.as_slice());
        Service::update(self, &req.id, resources.unwrap_or_default())?;
        Ok(api::Empty::default())
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
    fn exec_requests_map_to_params() {
        let req = api::ExecProcessRequest {
            id: "c1".into(),
            exec_id: "e1".into(),
            stdout: "/run/fifo/e1-stdout".into(),
            spec: MessageField::some(
                containerd_shim::protos::protobuf::well_known_types::any::Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: br#"{"args":["echo","x"],"cwd":"/"}"#.to_vec(),
                    ..Default::default()
                },
            ),
            ..Default::default()
        };
        let p = exec_params(&req);
        assert_eq!((p.id.as_str(), p.exec_id.as_str()), ("c1", "e1"));
        assert_eq!(p.stdio.stdout, "/run/fifo/e1-stdout");
        let process: serde_json::Value = serde_json::from_slice(&p.spec).unwrap();
        assert_eq!(process["args"][0], "echo");
    }
}
