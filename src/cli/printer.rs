//! The only writer to stdout and stderr (ARCHITECTURE invariant 2). stdout carries data (tables,
//! JSON, reports); stderr carries messages, errors, hints and progress.

#![expect(
    clippy::print_stderr,
    reason = "this module is the one place that prints"
)]

use std::io::Write;

use crate::exit::Refusal;

/// Writes data to stdout (a newline is added when missing).
pub(super) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = stdout.write_all(b"\n");
    }
    let _ = stdout.flush();
}

/// Writes a message line to stderr.
pub(super) fn note(text: &str) {
    eprintln!("{text}");
}

/// Prints an error (and its causes) with the hint of the refusal, if any.
pub(super) fn error(err: &anyhow::Error, refusal: Option<&Refusal>) {
    match refusal {
        Some(r) => {
            eprintln!("error: {}", r.what);
            let causes: Vec<String> = err
                .chain()
                .take_while(|e| e.downcast_ref::<Refusal>().is_none())
                .map(ToString::to_string)
                .collect();
            for c in causes {
                eprintln!("  while: {c}");
            }
            if let Some(fix) = &r.fix {
                eprintln!();
                eprintln!("hint: {fix}");
            }
        }
        None => {
            let mut chain = err.chain();
            if let Some(first) = chain.next() {
                eprintln!("error: {first}");
            }
            for cause in chain {
                eprintln!("  caused by: {cause}");
            }
        }
    }
}

/// Prints a hint line.
pub(super) fn hint(text: &str) {
    eprintln!();
    eprintln!("hint: {text}");
}
