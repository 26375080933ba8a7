use std::path::PathBuf;

pub fn default_runtime_dir() -> PathBuf {
    PathBuf::from(ember_protocol::ipc::RUNTIME_DIR)
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/Library/Application Support/dev.ember.tunnel")
}

pub fn default_log_dir() -> PathBuf {
    PathBuf::from("/Library/Logs/Ember")
}
