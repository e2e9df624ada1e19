//! A spinner on stderr for steps that take time (SPEC §5); indicatif hides it when stderr is not a
//! terminal, so pipes and CI stay quiet.

use std::cell::RefCell;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::pipeline::engine::Progress;

/// The spinner.
#[derive(Default)]
pub(super) struct Spinner {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for Spinner {
    fn begin(&self, step: u32, name: &str, role: &str) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} step {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(format!("{step} `{name}` ({role})"));
        bar.enable_steady_tick(Duration::from_millis(120));
        *self.bar.borrow_mut() = Some(bar);
    }

    fn end(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}
