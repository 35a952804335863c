//! The shape of a command's output and of the OpenAPI document, for the surface test
//! (`tests/surface.rs`): what a script or a client relies on (which keys exist, with which
//! JSON type; which routes, statuses and schema properties exist), without the values
//! that change from run to run (names, times, sizes, ids).
//!
//! Rules, the same for capture and check:
//!
//! - A JSON document becomes the set of its key paths, each with the set of JSON types
//!   seen there: `$` is the root, `.key` an object's key, `[]` every element of an array
//!   (elements are merged, so order and count do not matter). Types: `null`, `boolean`,
//!   `number` (integers and decimals alike), `string`, `array`, `object`.
//! - `null` is recorded like a type, and a key that is absent is simply not recorded. A
//!   path that was only ever `null` matches any type later (null says nothing about the
//!   type), but it must still be there: `null` becoming absent breaks `d["key"]` in a
//!   script and is reported as a removal.
//! - A check passes when every path of the golden is still there and every non-null type
//!   the golden saw is still among the types seen; new paths and new types are additions
//!   and pass. The exit code must be the same; stdout that was empty may become anything.
//! - The OpenAPI document becomes lines: each operation (method and path), its parameters
//!   (where, name, type, required), request body and response statuses with their
//!   content types and schema types, and for every component schema each property with
//!   its type, each required name and each enum value. Descriptions and examples are left
//!   out. A check passes when every golden line is still there.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The key paths of a JSON document with the types seen at each.
pub type Paths = BTreeMap<String, BTreeSet<String>>;

/// What a command printed on stdout, as far as the surface is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdout {
    /// Nothing (or only whitespace).
    Empty,
    /// A JSON document, by its paths.
    Json(Paths),
    /// A TOML document (`config show`, `config default`), by its paths as JSON.
    Toml(Paths),
    /// Something else: only that it is text is recorded.
    Text,
}

impl Stdout {
    fn kind(&self) -> &'static str {
        match self {
            Stdout::Empty => "empty",
            Stdout::Json(_) => "json",
            Stdout::Toml(_) => "toml",
            Stdout::Text => "text",
        }
    }

    fn paths(&self) -> Option<&Paths> {
        match self {
            Stdout::Json(p) | Stdout::Toml(p) => Some(p),
            _ => None,
        }
    }
}

/// One command's surface: how it ended and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandShape {
    /// The command line, for the reader of the golden file (not compared).
    pub command: String,
    /// The first line of stderr of a failed command, for the reader (not compared).
    pub stderr: Option<String>,
    pub exit: Option<i32>,
    pub stdout: Stdout,
}

impl CommandShape {
    /// Classifies `stdout`: JSON when it parses as JSON, TOML when `toml` is set and it
    /// parses as TOML, else text or empty.
    pub fn new(command: String, exit: Option<i32>, stdout: &str, toml: bool) -> CommandShape {
        let stdout = if stdout.trim().is_empty() {
            Stdout::Empty
        } else if let Ok(v) = serde_json::from_str::<Value>(stdout) {
            Stdout::Json(paths_of(&v))
        } else if let Some(v) = toml
            .then(|| toml::from_str::<toml::Value>(stdout).ok())
            .flatten()
        {
            Stdout::Toml(paths_of(&serde_json::to_value(v).unwrap()))
        } else {
            Stdout::Text
        };
        CommandShape {
            command,
            stderr: None,
            exit,
            stdout,
        }
    }

    /// The golden file's text.
    pub fn render(&self) -> String {
        let mut out = format!("# {}\n", self.command);
        if let Some(why) = &self.stderr {
            writeln!(out, "#! {why}").unwrap();
        }
        let exit = self.exit.map_or("signal".to_string(), |c| c.to_string());
        writeln!(out, "exit {exit}").unwrap();
        writeln!(out, "stdout {}", self.stdout.kind()).unwrap();
        if let Some(paths) = self.stdout.paths() {
            for (path, types) in paths {
                let types: Vec<&str> = types.iter().map(String::as_str).collect();
                writeln!(out, "{path}\t{}", types.join("|")).unwrap();
            }
        }
        out
    }

    /// Reads a golden file back.
    pub fn parse(text: &str) -> Result<CommandShape, String> {
        let mut command = String::new();
        let mut stderr = None;
        let mut exit = None;
        let mut kind = None;
        let mut paths = Paths::new();
        for line in text.lines() {
            if let Some(why) = line.strip_prefix("#! ") {
                stderr = Some(why.to_string());
            } else if let Some(c) = line.strip_prefix("# ") {
                command = c.to_string();
            } else if let Some(e) = line.strip_prefix("exit ") {
                exit = Some(e.parse::<i32>().ok());
            } else if let Some(k) = line.strip_prefix("stdout ") {
                kind = Some(k.to_string());
            } else if let Some((path, types)) = line.split_once('\t') {
                let types = types.split('|').map(str::to_string).collect();
                paths.insert(path.to_string(), types);
            } else if !line.is_empty() {
                return Err(format!("unreadable golden line {line:?}"));
            }
        }
        let exit = exit.ok_or("no exit line")?;
        let stdout = match kind.as_deref() {
            Some("empty") => Stdout::Empty,
            Some("json") => Stdout::Json(paths),
            Some("toml") => Stdout::Toml(paths),
            Some("text") => Stdout::Text,
            other => return Err(format!("bad stdout line {other:?}")),
        };
        Ok(CommandShape {
            command,
            stderr,
            exit,
            stdout,
        })
    }

    /// What `self` (now) lost or changed against `golden` (before); empty when it only
    /// added.
    pub fn regressions(&self, golden: &CommandShape) -> Vec<String> {
        let mut out = Vec::new();
        if self.exit != golden.exit {
            out.push(format!(
                "exit code: was {:?}, now {:?}",
                golden.exit, self.exit
            ));
        }
        let Some(before) = golden.stdout.paths() else {
            // Empty stdout may become anything; text must stay at least text.
            if golden.stdout == Stdout::Text && self.stdout == Stdout::Empty {
                out.push("stdout: was text, now empty".to_string());
            }
            return out;
        };
        if self.stdout.kind() != golden.stdout.kind() {
            out.push(format!(
                "stdout: was {}, now {}",
                golden.stdout.kind(),
                self.stdout.kind()
            ));
            return out;
        }
        let now = self.stdout.paths().unwrap();
        out.extend(path_regressions(before, now));
        out
    }
}

/// What `now` lost or changed against `before`, one line each.
pub fn path_regressions(before: &Paths, now: &Paths) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in before {
        let show = |t: &BTreeSet<String>| t.iter().cloned().collect::<Vec<_>>().join("|");
        match now.get(path) {
            None => out.push(format!("removed: {path} (was {})", show(was))),
            Some(is) => {
                let lost: Vec<&String> = was
                    .iter()
                    .filter(|t| *t != "null" && !is.contains(*t))
                    .collect();
                if !lost.is_empty() {
                    out.push(format!(
                        "type changed: {path} was {}, now {}",
                        show(was),
                        show(is)
                    ));
                }
            }
        }
    }
    out
}

/// The key paths of `v` with the types seen at each (see the module's rules).
pub fn paths_of(v: &Value) -> Paths {
    let mut out = Paths::new();
    walk(v, "$".to_string(), &mut out);
    out
}

fn walk(v: &Value, path: String, out: &mut Paths) {
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    out.entry(path.clone())
        .or_default()
        .insert(kind.to_string());
    match v {
        Value::Array(items) => {
            for item in items {
                walk(item, format!("{path}[]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                walk(item, format!("{path}.{}", key_segment(key)), out);
            }
        }
        _ => {}
    }
}

/// A key as a path segment: plain when it is a simple word, else quoted as JSON.
fn key_segment(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        serde_json::to_string(key).unwrap()
    }
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The OpenAPI document as lines (see the module's rules), sorted.
pub fn openapi_lines(doc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(version) = doc["openapi"].as_str() {
        out.insert(format!("openapi {version}"));
    }
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let m = method.to_uppercase();
            out.insert(format!("operation {m} {path}"));
            let params = item["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(op["parameters"].as_array().into_iter().flatten());
            for p in params {
                let required = if p["required"] == true {
                    " required"
                } else {
                    ""
                };
                out.insert(format!(
                    "parameter {m} {path} {} {}: {}{required}",
                    p["in"].as_str().unwrap_or("?"),
                    p["name"].as_str().unwrap_or("?"),
                    type_of(&p["schema"])
                ));
            }
            if let Some(body) = op.get("requestBody") {
                let required = if body["required"] == true {
                    " required"
                } else {
                    ""
                };
                for (ct, media) in body["content"].as_object().into_iter().flatten() {
                    out.insert(format!(
                        "request {m} {path} {ct}: {}{required}",
                        type_of(&media["schema"])
                    ));
                }
            }
            for (status, resp) in op["responses"].as_object().into_iter().flatten() {
                out.insert(format!("response {m} {path} {status}"));
                for (ct, media) in resp["content"].as_object().into_iter().flatten() {
                    out.insert(format!(
                        "response {m} {path} {status} {ct}: {}",
                        type_of(&media["schema"])
                    ));
                }
                for (name, header) in resp["headers"].as_object().into_iter().flatten() {
                    out.insert(format!(
                        "response {m} {path} {status} header {name}: {}",
                        type_of(&header["schema"])
                    ));
                }
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        schema_lines(name, schema, &mut out);
    }
    out
}

fn schema_lines(at: &str, s: &Value, out: &mut BTreeSet<String>) {
    out.insert(format!("schema {at}: {}", type_of(s)));
    for r in s["required"].as_array().into_iter().flatten() {
        out.insert(format!(
            "schema {at} required {}",
            r.as_str().unwrap_or("?")
        ));
    }
    for e in s["enum"].as_array().into_iter().flatten() {
        out.insert(format!("schema {at} enum {e}"));
    }
    for (key, p) in s["properties"].as_object().into_iter().flatten() {
        schema_lines(&format!("{at}.{}", key_segment(key)), p, out);
    }
    if is_structured(&s["items"]) {
        schema_lines(&format!("{at}[]"), &s["items"], out);
    }
    if is_structured(&s["additionalProperties"]) {
        schema_lines(&format!("{at}{{}}"), &s["additionalProperties"], out);
    }
    for combo in ["allOf", "oneOf", "anyOf"] {
        for (i, sub) in s[combo].as_array().into_iter().flatten().enumerate() {
            if is_structured(sub) {
                schema_lines(&format!("{at}/{combo}{i}"), sub, out);
            }
        }
    }
}

/// Whether an inline schema has parts of its own worth listing (properties, enums,
/// combinations); a `$ref` or a plain type is described by [`type_of`] alone.
fn is_structured(s: &Value) -> bool {
    s.is_object()
        && s.get("$ref").is_none()
        && [
            "properties",
            "enum",
            "allOf",
            "oneOf",
            "anyOf",
            "items",
            "required",
        ]
        .iter()
        .any(|k| s.get(*k).is_some_and(|v| !v.is_null()))
}

/// A schema's type in one word: the name a `$ref` points to, `array<T>`, `map<T>`,
/// `oneOf(A|B)`, or the type with its format (`integer(int64)`).
fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for combo in ["allOf", "oneOf", "anyOf"] {
        if let Some(subs) = s[combo].as_array() {
            let mut parts: Vec<String> = subs.iter().map(type_of).collect();
            parts.sort();
            return format!("{combo}({})", parts.join("|"));
        }
    }
    let mut types: Vec<String> = match &s["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    types.sort();
    let described: Vec<String> = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array<{}>", type_of(&s["items"])),
            "object" if s["additionalProperties"].is_object() => {
                format!("map<{}>", type_of(&s["additionalProperties"]))
            }
            _ => match s["format"].as_str() {
                Some(f) if t != "null" => format!("{t}({f})"),
                _ => t.clone(),
            },
        })
        .collect();
    if described.is_empty() {
        "any".to_string()
    } else {
        described.join("|")
    }
}

/// The golden file's text of the OpenAPI lines.
pub fn render_lines(header: &str, lines: &BTreeSet<String>) -> String {
    let mut out = format!("# {header}\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Reads OpenAPI golden lines back.
pub fn parse_lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("# "))
        .map(str::to_string)
        .collect()
}

/// The golden lines `now` lacks, each with what took its place when a line with the same
/// subject (the text before `: `) is there.
pub fn line_regressions(before: &BTreeSet<String>, now: &BTreeSet<String>) -> Vec<String> {
    let subject = |l: &str| {
        l.rsplit_once(": ")
            .map_or(l.to_string(), |(s, _)| s.to_string())
    };
    let mut out = Vec::new();
    for line in before.difference(now) {
        let s = subject(line);
        let instead: Vec<&String> = now
            .difference(before)
            .filter(|n| subject(n) == s && n.contains(": "))
            .collect();
        if instead.is_empty() || !line.contains(": ") {
            out.push(format!("removed: {line}"));
        } else {
            let instead: Vec<&str> = instead.iter().map(|l| l.as_str()).collect();
            out.push(format!("changed: {line}  ->  {}", instead.join(" / ")));
        }
    }
    out
}
