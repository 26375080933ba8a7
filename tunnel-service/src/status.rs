//! `ember-tunnel status`: the service's state as JSON, for people and scripts.

use std::io::Write as _;

use anyhow::{Context as _, Result, bail};
use ember_ipc::Endpoint;
use ember_protocol::ipc::ServiceMessage;
use futures::StreamExt as _;

pub async fn print(endpoint: &Endpoint, watch: bool) -> Result<()> {
    let (mut connection, handshake) = ember_ipc::client::connect(
        endpoint,
        concat!("ember-tunnel status ", env!("CARGO_PKG_VERSION")),
    )
    .await?;
    let mut out = std::io::stdout().lock();
    if !watch {
        serde_json::to_writer_pretty(&mut out, &handshake.state)?;
        writeln!(out)?;
        return Ok(());
    }
    serde_json::to_writer(&mut out, &handshake.state)?;
    writeln!(out)?;
    out.flush()?;
    while let Some(message) = connection.next().await {
        match message.context("lost the tunnel service")? {
            ServiceMessage::State { state } => {
                serde_json::to_writer(&mut out, &state)?;
                writeln!(out)?;
                out.flush()?;
            }
            ServiceMessage::Stopping { reason } => bail!("{reason}"),
            _ => {}
        }
    }
    bail!("the tunnel service closed the connection")
}
