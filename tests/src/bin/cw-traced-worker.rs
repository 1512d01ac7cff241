//! A Rust program that links the causeway-context writer statically (no shared library): each
//! "request" attaches a span, sleeps 30 ms inside it (off-CPU), and detaches; between requests it
//! sleeps 30 ms with no span. Prints `{"ready": pid}`, waits for a line on stdin, then prints the
//! ids it used: `{"tid": …, "spans": ["hex", …], "trace_id": "hex"}`.

use std::io::BufRead;
use std::time::Duration;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    println!("{{\"ready\": {}}}", std::process::id());
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    let trace_id = [0x5a; 16];
    let mut spans = Vec::new();
    for i in 1..=5u8 {
        let span_id = [i, 0, 0, 0, 0, 0, 0, 0x77];
        {
            let _g = causeway_context::attach(trace_id, span_id, 1);
            std::thread::sleep(Duration::from_millis(30));
        }
        spans.push(hex(&span_id));
        std::thread::sleep(Duration::from_millis(30));
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    println!(
        "{}",
        serde_json::json!({"tid": tid, "spans": spans, "trace_id": hex(&trace_id)})
    );
}
