//! The signals that end a wait or a command early: Ctrl-C (SIGINT), SIGTERM and a hang-up
//! (SIGHUP).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Listens for SIGINT, SIGTERM and SIGHUP from creation on (they no longer kill the process).
#[derive(Debug)]
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Starts listening. Must be called within a tokio runtime.
    pub fn new() -> std::io::Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The number of the next signal received.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => SignalKind::interrupt().as_raw_value(),
            _ = self.term.recv() => SignalKind::terminate().as_raw_value(),
            _ = self.hup.recv() => SignalKind::hangup().as_raw_value(),
        }
    }
}

/// Sends signal number `signo` to process `pid` (a child), if it is one of ours.
pub fn forward(pid: u32, signo: i32) {
    use rustix::process::{kill_process, Pid, Signal as Sig};
    let sig = match signo {
        1 => Sig::HUP,
        2 => Sig::INT,
        _ => Sig::TERM,
    };
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}
