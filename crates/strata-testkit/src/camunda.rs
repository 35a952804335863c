//! Fakes of the backup APIs a Camunda 8 cluster serves, written from the shapes Camunda
//! and Elastic publish (Camunda 8.2-8.8 docs, "Backup and restore"; Elasticsearch 8
//! snapshot API), for tests that drive the `camunda` and `http` components:
//!
//! - [`Role::Zeebe`]: the gateway's management port: `POST /actuator/exporting/pause`
//!   (`?soft=true`), `/resume`; `POST /actuator/backups` with `{"backupId": N}` (202; N
//!   must be larger than every earlier id, else 409), `GET /actuator/backups/{id}` with a
//!   state and one detail per partition (`COMPLETED` when every partition is), `GET
//!   /actuator/backups`, `DELETE /actuator/backups/{id}`; the same under
//!   `/actuator/backupRuntime` (8.8's orchestration cluster), and 8.8's web-application
//!   backups under `/actuator/backupHistory`; `GET /actuator/partitions` with each
//!   partition's `exporterPhase` (`EXPORTING`, `PAUSED`, `SOFT_PAUSED`).
//! - [`Role::WebApp`]: Operate, Tasklist (`COMPLETED`) and Optimize (`COMPLETE`), each on
//!   its management port: `POST/GET/DELETE /actuator/backups[/{id}]`, 404 for an unknown
//!   id.
//! - [`Role::Elastic`]: `PUT/GET/DELETE /_snapshot/{repository}/{snapshot}`, states
//!   `IN_PROGRESS`, `SUCCESS`, `FAILED`.
//!
//! Each fake is a small HTTP/1.1 server on 127.0.0.1 (a thread per connection) with
//! knobs a test turns while strata runs ([`Knobs`]) and a log of every request. A pause
//! takes effect when it has been *served* (after its delay), whether or not the client
//! still waits: a late pause lands, as it does on a real broker.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which API a fake serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Zeebe's gateway (management port), with this many partitions.
    Zeebe {
        /// How many partitions report each backup.
        partitions: u32,
    },
    /// A web application's management port: `optimize` answers `COMPLETE`, not
    /// `COMPLETED`.
    WebApp {
        /// Optimize's dialect (`COMPLETE`).
        optimize: bool,
    },
    /// Elasticsearch.
    Elastic,
}

/// What a test can turn while a fake runs.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// How many state polls of a backup answer "in progress" before it is done.
    pub polls_to_finish: u32,
    /// Backups (and snapshots) end `FAILED`.
    pub fail_backups: bool,
    /// The next this-many requests answer 503.
    pub unavailable: u32,
    /// How long a pause takes to be served.
    pub pause_delay: Duration,
    /// Resumes answer 503 while set.
    pub resume_down: bool,
    /// How long a delete takes to be answered.
    pub delete_delay: Duration,
    /// Zeebe: how many state polls of a new backup answer `INCOMPLETE` with a partition
    /// that does not know it yet (`DOES_NOT_EXIST`), as a broker does right after the
    /// request.
    pub does_not_exist_polls: u32,
    /// How long a backup's `POST` takes to be answered (the backup is taken at once: a
    /// client that gives up still leaves it behind).
    pub post_delay: Duration,
    /// Zeebe: `GET /actuator/partitions` answers 404, as a standalone gateway does.
    pub no_partitions: bool,
}

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `METHOD PATH` (with the query).
    pub line: String,
    /// The JSON body (`Null` when none).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct Backup {
    polls: u32,
    failed: bool,
}

#[derive(Default)]
struct State {
    knobs: Knobs,
    log: Vec<Request>,
    /// Zeebe: `None` exporting, `Some(soft)` paused.
    paused: Option<bool>,
    /// Backups (or snapshots) by id (or name).
    backups: BTreeMap<String, Backup>,
    /// Zeebe (8.8's orchestration cluster): the web applications' backups, under
    /// `/actuator/backupHistory`.
    history: BTreeMap<String, Backup>,
    /// Zeebe: the largest backup id taken.
    max_id: u64,
}

/// A running fake.
pub struct Fake {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    role: Role,
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Starts a fake of `role` on a free loopback port. Its threads end with the test's
    /// process.
    pub fn start(role: Role) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, served) = (state.clone(), role.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, role) = (shared.clone(), served.clone());
                std::thread::spawn(move || serve(stream, &role, &state));
            }
        });
        Fake { url, role, state }
    }

    /// Changes the knobs.
    pub fn set(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.state.lock().unwrap().knobs);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }

    /// The request lines so far, repeated polls of one path as one.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.log() {
            if r.line.starts_with("GET ") && out.last() == Some(&r.line) {
                continue;
            }
            out.push(r.line);
        }
        out
    }

    /// Zeebe: whether exporting is paused now (`Some(true)`: soft-paused).
    pub fn paused(&self) -> Option<bool> {
        self.state.lock().unwrap().paused
    }

    /// The ids (or snapshot names) of the backups the fake holds.
    pub fn backups(&self) -> Vec<String> {
        self.state.lock().unwrap().backups.keys().cloned().collect()
    }

    /// Zeebe: the ids of the web applications' backups its orchestration cluster holds
    /// (8.8's `/actuator/backupHistory`).
    pub fn history_backups(&self) -> Vec<String> {
        self.state.lock().unwrap().history.keys().cloned().collect()
    }

    /// The role it plays.
    pub fn role(&self) -> &Role {
        &self.role
    }
}

fn serve(stream: TcpStream, role: &Role, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() || first.is_empty() {
        return;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut len = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                len = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len.min(1 << 20)];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer, delay) = {
        let mut s = state.lock().unwrap();
        let (status, answer, delay) = if s.knobs.unavailable > 0 {
            s.knobs.unavailable -= 1;
            (503, json!({"message": "unavailable"}), Duration::ZERO)
        } else {
            let (status, answer, delay) = route(role, &mut s, &method, &target, &body);
            match method.as_str() {
                "DELETE" => (status, answer, delay + s.knobs.delete_delay),
                "POST" if target.contains("/actuator/backup") => {
                    (status, answer, delay + s.knobs.post_delay)
                }
                _ => (status, answer, delay),
            }
        };
        s.log.push(Request {
            line: format!("{method} {target}"),
            body,
            status,
            at: Instant::now(),
        });
        (status, answer, delay)
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    if status < 300 && method == "POST" && target.starts_with("/actuator/exporting/pause") {
        // Served now, whether or not the client still waits.
        state.lock().unwrap().paused = Some(target.contains("soft=true"));
    }
    let text = answer.to_string();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(reply.as_bytes());
}

fn route(
    role: &Role,
    s: &mut State,
    method: &str,
    target: &str,
    body: &Value,
) -> (u16, Value, Duration) {
    let path = target.split('?').next().unwrap_or_default();
    let now = |status: u16, answer: Value| (status, answer, Duration::ZERO);
    match role {
        Role::Zeebe { partitions } => match (method, path) {
            ("POST", "/actuator/exporting/pause") => (204, Value::Null, s.knobs.pause_delay),
            ("POST", "/actuator/exporting/resume") if s.knobs.resume_down => {
                now(503, json!({"message": "resume unavailable"}))
            }
            ("POST", "/actuator/exporting/resume") => {
                s.paused = None;
                now(204, Value::Null)
            }
            // A broker's (or 8.8's orchestration cluster's) partitions, with the phase
            // of their exporting.
            ("GET", "/actuator/partitions") if s.knobs.no_partitions => {
                now(404, json!({"error": "Not Found"}))
            }
            ("GET", "/actuator/partitions") => {
                let phase = match s.paused {
                    None => "EXPORTING",
                    Some(true) => "SOFT_PAUSED",
                    Some(false) => "PAUSED",
                };
                let partitions: serde_json::Map<String, Value> = (1..=*partitions)
                    .map(|p| {
                        (
                            p.to_string(),
                            json!({"role": "LEADER", "processedPosition": 42, "exportedPosition": 41, "exporterPhase": phase}),
                        )
                    })
                    .collect();
                now(200, Value::Object(partitions))
            }
            _ => {
                if let Some(rest) = path.strip_prefix("/actuator/backupHistory") {
                    // 8.8: Operate's and Tasklist's backups, on the cluster's port.
                    std::mem::swap(&mut s.backups, &mut s.history);
                    let answer = web_app_backups(s, method, rest, body, false);
                    std::mem::swap(&mut s.backups, &mut s.history);
                    return answer;
                }
                let rest = path
                    .strip_prefix("/actuator/backupRuntime")
                    .or_else(|| path.strip_prefix("/actuator/backups"));
                match rest {
                    Some(rest) => zeebe_backups(s, method, rest, body, *partitions),
                    None => now(404, json!({"message": "no such route"})),
                }
            }
        },
        Role::WebApp { optimize } => match path
            .strip_prefix("/actuator/backupHistory")
            .or_else(|| path.strip_prefix("/actuator/backups"))
        {
            Some(rest) => web_app_backups(s, method, rest, body, *optimize),
            None => now(404, json!({"message": "no such route"})),
        },
        Role::Elastic => match path.strip_prefix("/_snapshot/") {
            Some(rest) => elastic_snapshots(s, method, rest, body),
            None => now(404, json!({"error": "no such route"})),
        },
    }
}

/// The id a `POST` body names, if it is a positive long.
fn backup_id(body: &Value) -> Option<u64> {
    body.get("backupId")?.as_u64().filter(|n| *n > 0)
}

/// One poll of backup `id`: `(done, failed)`.
fn poll(s: &mut State, id: &str) -> Option<(bool, bool)> {
    let needed = s.knobs.polls_to_finish;
    let b = s.backups.get_mut(id)?;
    b.polls += 1;
    Some((b.polls > needed, b.failed))
}

/// Whether backup `id` is still unknown to a partition at this poll (see
/// [`Knobs::does_not_exist_polls`]); call after [`poll`].
fn not_yet_known(s: &State, id: &str) -> bool {
    s.backups
        .get(id)
        .is_some_and(|b| b.polls <= s.knobs.does_not_exist_polls)
}

fn zeebe_backups(
    s: &mut State,
    method: &str,
    rest: &str,
    body: &Value,
    partitions: u32,
) -> (u16, Value, Duration) {
    let now = |status: u16, answer: Value| (status, answer, Duration::ZERO);
    match (method, rest) {
        ("POST", "") | ("POST", "/") => {
            let Some(id) = backup_id(body) else {
                return now(400, json!({"message": "backupId must be a positive long"}));
            };
            if id <= s.max_id {
                return now(
                    409,
                    json!({"message": format!("backup id {id} is not larger than {}", s.max_id)}),
                );
            }
            s.max_id = id;
            let failed = s.knobs.fail_backups;
            s.backups
                .insert(id.to_string(), Backup { polls: 0, failed });
            now(
                202,
                json!({"message": format!("A backup with id {id} has been scheduled.")}),
            )
        }
        ("GET", "") | ("GET", "/") => {
            let list: Vec<Value> = s
                .backups
                .keys()
                .map(|id| json!({"backupId": id.parse::<u64>().unwrap_or(0), "state": "COMPLETED"}))
                .collect();
            now(200, Value::Array(list))
        }
        (method, id) => {
            let id = id.trim_start_matches('/').to_string();
            match method {
                "DELETE" => match s.backups.remove(&id) {
                    Some(_) => now(204, Value::Null),
                    None => now(404, json!({"message": format!("no backup {id}")})),
                },
                "GET" => {
                    let Some((done, failed)) = poll(s, &id) else {
                        return now(404, json!({"message": format!("no backup {id}")}));
                    };
                    let unknown = not_yet_known(s, &id);
                    let state = match (done, failed) {
                        _ if unknown => "INCOMPLETE",
                        (_, true) => "FAILED",
                        (true, false) => "COMPLETED",
                        (false, false) => "IN_PROGRESS",
                    };
                    let details: Vec<Value> = (1..=partitions)
                        .map(|p| {
                            let state = match (unknown, p) {
                                (true, 1) => "DOES_NOT_EXIST",
                                (true, _) => "IN_PROGRESS",
                                _ => state,
                            };
                            json!({
                                "partitionId": p,
                                "state": state,
                                "snapshotId": format!("{p}-{id}-snapshot-0000000{p}"),
                                "brokerVersion": "8.7.4",
                                "createdAt": "2026-11-26T10:00:00.000+0000",
                                "lastUpdatedAt": "2026-11-26T10:00:01.000+0000",
                                "checkpointPosition": 1_234_567_u64 + p as u64,
                                "firstLogPosition": 1_000_000_u64 + p as u64,
                                "failureReason": if failed { "disk full on broker" } else { "" },
                            })
                        })
                        .collect();
                    now(
                        200,
                        json!({
                            "backupId": id.parse::<u64>().unwrap_or(0),
                            "state": state,
                            "failureReason": if failed { "disk full on broker" } else { "" },
                            "details": details,
                        }),
                    )
                }
                _ => now(405, json!({"message": "method not allowed"})),
            }
        }
    }
}

fn web_app_backups(
    s: &mut State,
    method: &str,
    rest: &str,
    body: &Value,
    optimize: bool,
) -> (u16, Value, Duration) {
    let now = |status: u16, answer: Value| (status, answer, Duration::ZERO);
    match (method, rest) {
        ("POST", "") | ("POST", "/") => {
            let Some(id) = backup_id(body) else {
                return now(400, json!({"message": "backupId must be a positive long"}));
            };
            if s.backups.contains_key(&id.to_string()) {
                return now(409, json!({"message": format!("backup {id} exists")}));
            }
            let failed = s.knobs.fail_backups;
            s.backups
                .insert(id.to_string(), Backup { polls: 0, failed });
            let names: Vec<String> = (1..=3)
                .map(|part| format!("camunda_webapps_{id}_8.7.4_part_{part}_of_3"))
                .collect();
            now(200, json!({"scheduledSnapshots": names}))
        }
        (method, id) => {
            let id = id.trim_start_matches('/').to_string();
            match method {
                "DELETE" => match s.backups.remove(&id) {
                    Some(_) => now(204, Value::Null),
                    None => now(404, json!({"message": format!("no backup {id}")})),
                },
                "GET" => {
                    let Some((done, failed)) = poll(s, &id) else {
                        return now(404, json!({"message": format!("no backup {id}")}));
                    };
                    let complete = if optimize { "COMPLETE" } else { "COMPLETED" };
                    let state = match (done, failed) {
                        (_, true) => "FAILED",
                        (true, false) => complete,
                        (false, false) => "IN_PROGRESS",
                    };
                    let details: Vec<Value> = (1..=3)
                        .map(|part| {
                            json!({
                                "snapshotName": format!("camunda_webapps_{id}_8.7.4_part_{part}_of_3"),
                                "state": if state == complete { "SUCCESS" } else { state },
                                "startTime": "2026-11-26T10:00:00.000+0000",
                            })
                        })
                        .collect();
                    now(
                        200,
                        json!({
                            "backupId": id.parse::<u64>().unwrap_or(0),
                            "failureReason": if failed { Value::from("snapshot failed") } else { Value::Null },
                            "state": state,
                            "details": details,
                        }),
                    )
                }
                _ => now(405, json!({"message": "method not allowed"})),
            }
        }
    }
}

fn elastic_snapshots(
    s: &mut State,
    method: &str,
    rest: &str,
    body: &Value,
) -> (u16, Value, Duration) {
    let now = |status: u16, answer: Value| (status, answer, Duration::ZERO);
    let Some((_repository, snapshot)) = rest.split_once('/') else {
        return now(400, json!({"error": "name a repository and a snapshot"}));
    };
    let snapshot = snapshot.to_string();
    match method {
        "PUT" => {
            if s.backups.contains_key(&snapshot) {
                return now(
                    400,
                    json!({"error": {"type": "invalid_snapshot_name_exception"}}),
                );
            }
            if body.get("indices").is_none() {
                return now(400, json!({"error": "indices missing"}));
            }
            let failed = s.knobs.fail_backups;
            s.backups.insert(snapshot, Backup { polls: 0, failed });
            now(200, json!({"accepted": true}))
        }
        "GET" => {
            let Some((done, failed)) = poll(s, &snapshot) else {
                return now(
                    404,
                    json!({"error": {"type": "snapshot_missing_exception"}, "status": 404}),
                );
            };
            let state = match (done, failed) {
                (_, true) => "FAILED",
                (true, false) => "SUCCESS",
                (false, false) => "IN_PROGRESS",
            };
            now(
                200,
                json!({"snapshots": [{"snapshot": snapshot, "state": state, "indices": ["zeebe-record_process_8.7.4_2026-11-26"]}]}),
            )
        }
        "DELETE" => match s.backups.remove(&snapshot) {
            Some(_) => now(200, json!({"acknowledged": true})),
            None => now(
                404,
                json!({"error": {"type": "snapshot_missing_exception"}, "status": 404}),
            ),
        },
        _ => now(405, json!({"error": "method not allowed"})),
    }
}
