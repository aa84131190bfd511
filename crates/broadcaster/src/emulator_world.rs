//! `--emulator` keeps the in-process emulator's world in the data directory, so a restart finds
//! the linked accounts: the world is restored from `<data_dir>/emulator/world.json` at start
//! (a file that cannot be used stops the start with [`ServeError::EmulatorState`]; it is never
//! silently replaced), saved whenever it changed (checked every [`SAVE_EVERY`]) and once more
//! after the sessions closed at shutdown. Each save replaces the file whole (temporary file,
//! fsync, rename), so a crash leaves the last complete save.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wa_emulator::{Emulator, EmulatorConfig, EmulatorHandle, StateError, WorldState};

use crate::ServeError;

/// How often the saver looks for changes (a crash loses at most this much emulator history).
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The emulator's directory in the data directory.
pub const DIR: &str = "emulator";

/// The world file in [`DIR`].
pub const FILE: &str = "world.json";

/// Where the world of `data_dir`'s emulator is kept.
pub fn world_file(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR).join(FILE)
}

/// Starts the in-process emulator from the world saved in `data_dir` (a new world when there
/// is none) and the saver that keeps the file current.
pub async fn start(data_dir: &Path) -> Result<(Arc<EmulatorHandle>, EmulatorSaver), ServeError> {
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|source| ServeError::DataDir { path: dir.clone(), source })?;
    // The world holds the simulated phones' private keys: owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| ServeError::DataDir { path: dir.clone(), source })?;
    }
    let path = dir.join(FILE);
    let load = path.clone();
    let saved = tokio::task::spawn_blocking(move || WorldState::load(&load))
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?
        .map_err(|e| emulator_state(&path, e.into()))?;
    let restored = saved.is_some();
    let emu = match saved {
        Some(state) => {
            Emulator::restore(EmulatorConfig::default(), state).await.map_err(|e| emulator_state(&path, e))?
        }
        None => Emulator::start(EmulatorConfig::default()).await?,
    };
    let emu = Arc::new(emu);
    tracing::info!(url = %emu.ws_url(), file = %path.display(), restored, "in-process WhatsApp emulator started");
    let saver = EmulatorSaver::start(emu.clone(), path);
    Ok((emu, saver))
}

fn emulator_state(path: &Path, e: wa_emulator::RestoreError) -> ServeError {
    match e {
        wa_emulator::RestoreError::Start(io) => ServeError::Io(io),
        wa_emulator::RestoreError::State(source) => {
            ServeError::EmulatorState { path: path.to_owned(), source }
        }
    }
}

/// Saves the emulator's world whenever it changed, until [`EmulatorSaver::finish`].
#[derive(Debug)]
pub struct EmulatorSaver {
    emu: Arc<EmulatorHandle>,
    path: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    saved: tokio::sync::watch::Receiver<Option<u64>>,
}

impl EmulatorSaver {
    fn start(emu: Arc<EmulatorHandle>, path: PathBuf) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (saved_tx, saved) = tokio::sync::watch::channel(None);
        let (e, p) = (emu.clone(), path.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAVE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut saved_at = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let changes = e.changes();
                if saved_at == Some(changes) {
                    continue;
                }
                match save(&e, &p).await {
                    Ok(()) => {
                        saved_at = Some(changes);
                        saved_tx.send_replace(saved_at);
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot save the emulator's world; retrying"),
                }
            }
        });
        Self { emu, path, stop, task, saved }
    }

    /// The emulator's change counter ([`EmulatorHandle::changes`]) as of the last periodic save
    /// (`None` before the first): the file holds at least every change up to it, which is what
    /// a crash leaves.
    pub fn saved(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.saved.clone()
    }

    /// Stops the periodic saves and saves once more (call after the sessions closed, so what
    /// they left unacknowledged is kept as undelivered).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        match save(&self.emu, &self.path).await {
            Ok(()) => tracing::info!(file = %self.path.display(), "emulator world saved"),
            Err(e) => tracing::error!(error = %e, "cannot save the emulator's world"),
        }
    }
}

async fn save(emu: &Arc<EmulatorHandle>, path: &Path) -> Result<(), StateError> {
    let (emu, file) = (emu.clone(), path.to_owned());
    // Capturing and writing are blocking work (the world lock, file I/O).
    tokio::task::spawn_blocking(move || emu.state()?.save(&file))
        .await
        .map_err(|e| StateError::Io { path: path.display().to_string(), source: std::io::Error::other(e) })?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// What a crash leaves: without the final save, the file already holds every change up to
    /// the last periodic save, and an emulator restored from it has the account.
    #[tokio::test]
    async fn a_change_is_on_disk_within_a_save_period_without_a_clean_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (emu, saver) = start(dir.path()).await.unwrap();
        emu.create_account("15550003131", "Cid").unwrap();
        let changed = emu.changes();
        let mut saved = saver.saved();
        tokio::time::timeout(Duration::from_secs(60), saved.wait_for(|s| s.is_some_and(|n| n >= changed)))
            .await
            .expect("saved within the period")
            .unwrap();
        let state = WorldState::load(&world_file(dir.path())).unwrap().expect("a saved world");
        let back = Emulator::restore(EmulatorConfig::default(), state).await.unwrap();
        assert!(back.phone("15550003131").is_ok(), "the account is in the saved world");
        back.shutdown().await;
        drop(saver);
    }
}
