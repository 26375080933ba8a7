//! The app's side of the IPC, as the tests speak it.

use std::time::{Duration, Instant};

use ember_ipc::client::Connection;
use ember_protocol::ipc::{ClientMessage, IpcError, Reply, Request, ServiceMessage, ViewState};
use futures::{SinkExt as _, StreamExt as _};

/// Longer than any step the service takes in a test (a sign-in in a namespace world included).
const PATIENCE: Duration = Duration::from_secs(20);

/// Sends `request` and returns the service's answer to it, skipping the states and log chunks
/// published in between.
pub async fn ask(app: &mut Connection, id: u64, request: Request) -> Result<Reply, IpcError> {
    app.send(ClientMessage::Request { id, request })
        .await
        .unwrap();
    loop {
        match next(app).await {
            ServiceMessage::Response { id: got, result } if got == id => return result,
            ServiceMessage::State { .. } | ServiceMessage::LogChunk { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// [`ask`] for a request that must succeed.
pub async fn request(app: &mut Connection, id: u64, request: Request) -> Reply {
    match ask(app, id, request).await {
        Ok(reply) => reply,
        Err(e) => panic!("the service refused request {id}: {e:?}"),
    }
}

pub async fn next(app: &mut Connection) -> ServiceMessage {
    tokio::time::timeout(PATIENCE, app.next())
        .await
        .expect("nothing from the service for 20 s")
        .expect("the service closed the connection")
        .unwrap()
}

/// Waits for a published state that satisfies `done`.
pub async fn wait_for(
    app: &mut Connection,
    what: &str,
    done: impl Fn(&ViewState) -> bool,
) -> ViewState {
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        if let ServiceMessage::State { state } = next(app).await
            && done(&state)
        {
            return state;
        }
    }
}
