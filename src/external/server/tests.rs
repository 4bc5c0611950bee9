//! The server's waits and reloads against a stand-in OpenAI-compatible server: a running one
//! reloads, sleeps through the update and wakes; a managed one that can reload starts once.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// A stand-in OpenAI-compatible server on a free port that answers every request with
/// 200 (a one-model list for `/v1/models`) and records the request lines.
fn fake_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(vec![]));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if header.trim().is_empty() {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request = line.trim().rsplit_once(' ').unwrap().0.to_string();
            let answer = if request.ends_with("/v1/models") {
                r#"{"data": [{"id": "m"}]}"#
            } else {
                "{}"
            };
            log.lock().unwrap().push(request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, seen)
}

fn section(toml: &str) -> ServerSection {
    toml::from_str(toml).unwrap()
}

/// Requests seen since the last call, without the readiness polls.
fn taken(seen: &Mutex<Vec<String>>) -> Vec<String> {
    let mut seen = seen.lock().unwrap();
    let out = seen
        .iter()
        .filter(|r| !r.ends_with("/v1/models"))
        .cloned()
        .collect();
    seen.clear();
    out
}

#[test]
fn a_running_server_reloads_sleeps_through_the_update_and_wakes() {
    let (port, seen) = fake_server();
    let dir = tempfile::tempdir().unwrap();
    let config = section(&format!(
        "url = \"http://127.0.0.1:{port}\"\nreload = \"vllm\"\nsleep = true"
    ));
    let mut server =
        ModelServer::new(Role::GENERATE, &config, dir.path().join("server.log")).unwrap();
    let (one, two) = (dir.path().join("iter-001"), dir.path().join("iter-002"));
    server.serve(&one, false, &mut wait::unwatched).unwrap();
    assert_eq!(taken(&seen), ["POST /collective_rpc"]);
    server.release(&mut wait::unwatched).unwrap();
    assert_eq!(taken(&seen), ["POST /sleep?level=1"]);
    server.serve(&two, false, &mut wait::unwatched).unwrap();
    assert_eq!(taken(&seen), ["POST /wake_up", "POST /collective_rpc"]);
    // Serving what it serves asks nothing.
    server.serve(&two, false, &mut wait::unwatched).unwrap();
    assert!(taken(&seen).is_empty());
}

#[test]
fn a_managed_server_that_can_reload_is_started_once() {
    let (port, seen) = fake_server();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    // The "server" is a process that only lives; the fake answers on its port.
    let config = section(&format!(
        "command = \"echo serving {{checkpoint}}; exec sleep 600\"\nport = {port}\n\
         reload = \"vllm\""
    ));
    let mut server = ModelServer::new(Role::GENERATE, &config, log.clone()).unwrap();
    let (one, two) = (dir.path().join("iter-001"), dir.path().join("iter-002"));
    server.serve(&one, true, &mut wait::unwatched).unwrap();
    assert!(taken(&seen).is_empty(), "started, not reloaded");
    server.release(&mut wait::unwatched).unwrap();
    server.serve(&two, false, &mut wait::unwatched).unwrap();
    assert_eq!(taken(&seen), ["POST /collective_rpc"]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("# selm-tui: starting").count(), 1, "{text}");
    // Without `reload` it is stopped after generation and started again.
    let config = section(&format!(
        "command = \"echo serving {{checkpoint}}; exec sleep 600\"\nport = {port}"
    ));
    let log = dir.path().join("restarts.log");
    let mut server = ModelServer::new(Role::GENERATE, &config, log.clone()).unwrap();
    server.serve(&one, true, &mut wait::unwatched).unwrap();
    server.release(&mut wait::unwatched).unwrap();
    assert!(server.child.is_none());
    server.serve(&two, false, &mut wait::unwatched).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("# selm-tui: starting").count(), 2, "{text}");
}
