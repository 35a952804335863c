//! Guards for processes a test starts: each is stopped when the test ends however it ends
//! (a failed assertion must not leave a ticker, a worker or a server running).

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A daemon that is not our child (it detached), sent `signal` when dropped unless it
/// already exited.
pub struct Daemon {
    /// Its process id.
    pub pid: i32,
    signal: i32,
}

impl Daemon {
    /// Stopped with SIGTERM, as an operator would.
    pub fn terminated(pid: i32) -> Daemon {
        Daemon {
            pid,
            signal: libc::SIGTERM,
        }
    }

    /// Stopped with SIGKILL.
    pub fn killed(pid: i32) -> Daemon {
        Daemon {
            pid,
            signal: libc::SIGKILL,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: plain kill(2); the daemon may be gone already, which is fine.
        unsafe { libc::kill(self.pid, self.signal) };
    }
}

/// Sends SIGTERM and returns the exit code.
pub fn terminate(process: &mut KillOnDrop) -> Option<i32> {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(process.0.id() as i32, libc::SIGTERM) };
    process.0.wait().unwrap().code()
}

/// Sends SIGTERM and returns the exit code, panicking when the process has not exited
/// within `limit` (a guard against hanging, not a timing assertion).
pub fn terminate_within(process: &mut KillOnDrop, limit: Duration) -> Option<i32> {
    terminate_child_within(&mut process.0, limit)
}

/// [`terminate_within`] for any child (a [`crate::http::Server`]'s, say).
pub fn terminate_child_within(child: &mut Child, limit: Duration) -> Option<i32> {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {limit:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts a finished command succeeded, naming `what` ran and showing its exit code,
/// stdout and stderr otherwise; returns its stdout.
pub fn assert_success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Waits until `child` has created `mark` (a file it writes when it reached the point the
/// test holds it at), panicking when the child ends first or after `limit` with `what`.
pub fn wait_for_mark(child: &mut Child, mark: &std::path::Path, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !mark.exists() {
        assert!(child.try_wait().unwrap().is_none(), "{what} ended early");
        assert!(
            Instant::now() < deadline,
            "{what} never reached its held write"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a spawned child (its stdout and stderr piped) and collects its output,
/// killing it and panicking with what it printed when it has not exited within `limit`
/// (a guard against hanging, not a timing assertion).
pub fn output_within(mut child: Child, limit: Duration, what: &str) -> Output {
    use std::io::Read;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not end within {limit:?}; it printed:\n{}\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap()),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
