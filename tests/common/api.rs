//! Admin API helpers: a small HTTP/1.1 client with headers and bodies, and a validator
//! of JSON responses against the OpenAPI description Prism serves
//! (`crates/prism/src/openapi.json`).
//!
//! The validator covers the subset of OpenAPI 3.0 schemas that description uses: `$ref`
//! (to `#/components/...`), `type` (object, array, string, integer, number, boolean),
//! `nullable`, `required`, `properties`, `additionalProperties: false`, `items`, `enum`,
//! `minimum`, `maximum` and `pattern` (only `^[...]{m,n}$` character-class patterns). Anything else
//! in a schema makes validation fail loudly, so the description cannot silently outgrow it.

use serde_json::Value;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status, headers (names lower-cased), body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body if it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", self.status, self.body))
    }
}

/// One request over a fresh connection (`Connection: close`).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    let timeout = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        // A server that answers early (413) may close before reading it all.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A reset after a complete early answer still leaves the answer.
        Err(e) if !raw.is_empty() && e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("malformed HTTP response: {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line: {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        String::from_utf8_lossy(&super::dechunk(body.as_bytes())).into_owned()
    } else {
        body.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Calls the admin API of one Prism, with a bearer token or without.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Api {
        Api {
            addr,
            token: token.map(str::to_owned),
        }
    }

    #[track_caller]
    pub fn call(&self, method: &str, path: &str, json_body: Option<&Value>) -> HttpResponse {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let body = json_body.map(|v| v.to_string().into_bytes());
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        http_request(self.addr, method, path, &headers, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET /api/v1/streams`, checked to be 200 and valid against the description.
    #[track_caller]
    pub fn streams(&self, spec: &OpenApi) -> Value {
        let r = self.call("GET", "/api/v1/streams", None);
        assert_eq!(r.status, 200, "GET /api/v1/streams: {}", r.body);
        let v = r.json();
        spec.check_response("/api/v1/streams", "get", 200, &v);
        v
    }

    /// The stream `name` of a `GET /api/v1/streams` answer.
    pub fn stream(&self, spec: &OpenApi, name: &str) -> Option<Value> {
        let v = self.streams(spec);
        v["streams"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
    }
}

/// The target `name` of a stream object.
pub fn target<'a>(stream: &'a Value, name: &str) -> Option<&'a Value> {
    stream["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
}

/// The OpenAPI description, for validating responses.
pub struct OpenApi {
    pub doc: Value,
}

impl OpenApi {
    /// Loads `crates/prism/src/openapi.json` (what the binary serves, via include_str!).
    pub fn load() -> OpenApi {
        let path = super::workspace_dir().join("crates/prism/src/openapi.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        OpenApi {
            doc: serde_json::from_str(&text).expect("openapi.json is JSON"),
        }
    }

    /// The JSON schema of the `status` response of `method path` (path as in the
    /// description, e.g. `/api/v1/streams/{app}/{key}/targets`); None if it has no body.
    pub fn response_schema(&self, path: &str, method: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][path][method];
        assert!(
            op.is_object(),
            "no operation {method} {path} in openapi.json"
        );
        let mut resp = op["responses"][status.to_string()].clone();
        assert!(
            resp.is_object(),
            "{method} {path} does not describe a {status} response"
        );
        if let Some(r) = resp.get("$ref").and_then(Value::as_str) {
            resp = self.resolve(r).clone();
        }
        let schema = resp["content"]["application/json"]["schema"].clone();
        (!schema.is_null()).then_some(schema)
    }

    /// Panics naming every mismatch if `value` does not fit the described response.
    #[track_caller]
    pub fn check_response(&self, path: &str, method: &str, status: u16, value: &Value) {
        let schema = self
            .response_schema(path, method, status)
            .unwrap_or_else(|| panic!("{method} {path} {status} has no JSON body described"));
        let mut errors = Vec::new();
        self.validate(&schema, value, "$", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {path} {status} does not match openapi.json:\n  {}\nvalue: {value:#}",
            errors.join("\n  ")
        );
    }

    fn resolve(&self, r: &str) -> &Value {
        let p = r
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("only local $refs are supported: {r}"));
        let mut v = &self.doc;
        for part in p.split('/') {
            v = &v[part];
        }
        assert!(!v.is_null(), "dangling $ref {r}");
        v
    }

    /// Appends to `errors` what in `value` (at `at`) does not fit `schema`.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            return self.validate(self.resolve(r), value, at, errors);
        }
        let obj = schema.as_object().expect("schema is an object");
        const KNOWN: &[&str] = &[
            "type",
            "nullable",
            "required",
            "properties",
            "additionalProperties",
            "items",
            "enum",
            "minimum",
            "maximum",
            "pattern",
            "description",
            "example",
            "format",
        ];
        for k in obj.keys() {
            assert!(
                KNOWN.contains(&k.as_str()),
                "validator does not support schema keyword `{k}` (at {at})"
            );
        }
        if value.is_null() {
            if schema["nullable"] != true {
                errors.push(format!("{at}: null but not nullable"));
            }
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                other => panic!("unknown type {other} in schema at {at}"),
            };
            if !ok {
                errors.push(format!("{at}: expected {t}, got {value}"));
                return;
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            if !e.contains(value) {
                errors.push(format!("{at}: {value} not one of {e:?}"));
            }
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if value.as_f64().is_some_and(|v| v < min) {
                errors.push(format!("{at}: {value} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if value.as_f64().is_some_and(|v| v > max) {
                errors.push(format!("{at}: {value} > maximum {max}"));
            }
        }
        if let (Some(p), Some(s)) = (
            schema.get("pattern").and_then(Value::as_str),
            value.as_str(),
        ) {
            if !simple_pattern_matches(p, s) {
                errors.push(format!("{at}: {s:?} does not match {p}"));
            }
        }
        if let Some(map) = value.as_object() {
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().expect("required names are strings");
                if !map.contains_key(r) {
                    errors.push(format!("{at}: missing required `{r}`"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, v) in map {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => self.validate(s, v, &format!("{at}.{k}"), errors),
                    None if schema["additionalProperties"] == false => {
                        errors.push(format!("{at}: unexpected property `{k}`"))
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

/// `^[class]{m,n}$` patterns only (class: ranges and literal characters).
pub fn simple_pattern_matches(pattern: &str, s: &str) -> bool {
    let inner = pattern
        .strip_prefix("^[")
        .and_then(|p| p.strip_suffix('$'))
        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
    let (class, count) = inner
        .split_once("]{")
        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
    let (min, max) = count
        .trim_end_matches('}')
        .split_once(',')
        .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
        .unwrap_or_else(|| panic!("unsupported pattern {pattern}"));
    let chars: Vec<char> = class.chars().collect();
    let in_class = |c: char| {
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                if (chars[i]..=chars[i + 2]).contains(&c) {
                    return true;
                }
                i += 3;
            } else {
                if chars[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    };
    let n = s.chars().count();
    (min..=max).contains(&n) && s.chars().all(in_class)
}
