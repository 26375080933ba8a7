//! The gateway side of the API: its hello, its grants and revocations, its heartbeats.

use super::*;

pub(super) async fn run_gateway(
    state: Shared,
    mut socket: WebSocket,
    token: TokenRecord,
    record: crate::model::GatewayRecord,
) {
    let heartbeat = state.gateway_heartbeat_interval();
    let hello = match first_message(&mut socket, heartbeat * 3).await {
        None => {
            return close_with(
                &mut socket,
                error_for_gateway(ErrorCode::Timeout, "no hello"),
            )
            .await;
        }
        Some(Incoming::Text(text)) => {
            portal::decode::<GatewayMessage>(&text, GatewayMessage::TYPES)
        }
        Some(_) => return,
    };
    let public_key = match hello {
        Ok(GatewayMessage::Hello {
            protocol_version,
            public_key,
            name,
            version,
        }) => {
            if let Err((code, message)) = check_hello(
                protocol_version,
                &public_key,
                &[("name", &name), ("version", &version)],
            ) {
                return close_with(&mut socket, error_for_gateway(code, message)).await;
            }
            public_key
        }
        Ok(_) => {
            return close_with(
                &mut socket,
                error_for_gateway(
                    ErrorCode::HelloExpected,
                    "the first message must be `hello`",
                ),
            )
            .await;
        }
        Err(e) => return close_with(&mut socket, error_for_gateway(e.code(), e.to_string())).await,
    };
    let interface = match state
        .store
        .tunnel_interface(&format!("gateway:{}", record.id))
        .await
    {
        Ok(interface) => interface,
        Err(e) => {
            warn!(error = %e, "cannot allocate gateway addresses");
            return close_with(
                &mut socket,
                error_for_gateway(ErrorCode::Internal, "the portal cannot store this gateway"),
            )
            .await;
        }
    };
    let snapshot = state.snapshot();
    let (Some(account), Some(site)) = (
        snapshot.accounts.get(&record.account_id),
        snapshot.sites.get(&record.site_id),
    ) else {
        return close_with(
            &mut socket,
            error_for_gateway(ErrorCode::Unauthorized, "unknown account or site"),
        )
        .await;
    };
    let init = encode(&PortalToGateway::Init {
        gateway_id: record.id.clone(),
        account: account.clone(),
        site: site.info.clone(),
        interface,
        relays: state.relays_for(&record.id),
        heartbeat_interval_ms: heartbeat.as_millis() as u64,
    });
    // A gateway that falls behind is closed, not skipped: it would miss revocations. It
    // reconnects and the portal confirms every grant that still holds.
    let (tx, mut rx) = outbox(
        GATEWAY_QUEUE,
        error_for_gateway(
            ErrorCode::Internal,
            "this gateway fell behind the portal's messages; reconnect",
        ),
    );
    let session = state.with_hub(|hub| {
        let session = hub.next_session();
        hub.add_gateway(GatewayEntry {
            session,
            gateway_id: record.id.clone(),
            account_id: record.account_id.clone(),
            site_id: record.site_id.clone(),
            token_id: token.id.clone(),
            public_key,
            interface,
            tx,
            reported_connections: 0,
            last_chosen: 0,
        });
        session
    });
    info!(gateway = %record.id, "gateway connected");
    if send_text(&mut socket, init).await {
        let mut ticks = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        let refresh = state
            .relay_refresh_interval()
            .unwrap_or(Duration::from_secs(86_400 * 365));
        let mut relay_refresh = tokio::time::interval_at(Instant::now() + refresh, refresh);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                incoming = receive(&mut socket) => {
                    last_heard = Instant::now();
                    match incoming {
                        Incoming::Text(text) => {
                            if !handle_gateway(&state, &mut socket, &record.id, session, &text).await {
                                break;
                            }
                        }
                        Incoming::Other => {}
                        Incoming::Gone => break,
                        Incoming::Broken(e) => {
                            close_with(&mut socket, error_for_gateway(ErrorCode::MessageTooLarge, e)).await;
                            break;
                        }
                    }
                }
                outbound = rx.recv() => match outbound {
                    Some(Outbound::Message(text)) => if !send_text(&mut socket, text).await { break },
                    Some(Outbound::Close(text)) => { close_with(&mut socket, text).await; break }
                    None => break,
                },
                _ = ticks.tick() => {
                    if last_heard.elapsed() > heartbeat * 3 {
                        close_with(&mut socket, error_for_gateway(ErrorCode::Timeout, "no message for three heartbeat intervals")).await;
                        break;
                    }
                    if !send_text(&mut socket, encode(&PortalToGateway::Heartbeat)).await { break }
                }
                _ = relay_refresh.tick() => {
                    let relays = state.relays_for(&record.id);
                    if !send_text(&mut socket, encode(&PortalToGateway::RelaysUpdated { relays })).await { break }
                }
            }
        }
    }
    state.with_hub(|hub| hub.remove_gateway(&record.id, session));
    info!(gateway = %record.id, "gateway disconnected");
}

async fn handle_gateway(
    state: &Shared,
    socket: &mut WebSocket,
    gateway_id: &str,
    session: u64,
    text: &str,
) -> bool {
    let message = match portal::decode::<GatewayMessage>(text, GatewayMessage::TYPES) {
        Ok(message) => message,
        Err(e @ portal::DecodeError::UnknownType(_)) => {
            return send_text(socket, error_for_gateway(e.code(), e.to_string())).await;
        }
        Err(e) => {
            close_with(socket, error_for_gateway(e.code(), e.to_string())).await;
            return false;
        }
    };
    match message {
        GatewayMessage::Heartbeat => true,
        GatewayMessage::Hello { .. } => {
            close_with(
                socket,
                error_for_gateway(ErrorCode::HelloExpected, "`hello` was already sent"),
            )
            .await;
            false
        }
        GatewayMessage::Health { connections, .. } => {
            state.with_hub(|hub| hub.set_reported_connections(gateway_id, session, connections));
            true
        }
        GatewayMessage::IceCandidates {
            client_id,
            candidates,
        } => {
            if let Err(message) = check_candidates(&candidates) {
                return send_text(socket, error_for_gateway(ErrorCode::InvalidField, message))
                    .await;
            }
            let forwarded = state.with_hub(|hub| {
                if !hub.has_grant(&client_id, gateway_id) {
                    return false;
                }
                hub.client(&client_id).is_some_and(|c| {
                    c.tx.send(Outbound::Message(encode(&PortalToClient::IceCandidates {
                        gateway_id: gateway_id.to_owned(),
                        candidates,
                    })))
                })
            });
            if forwarded {
                return true;
            }
            send_text(
                socket,
                error_for_gateway(
                    ErrorCode::NoSuchPeer,
                    format!("no grant with client `{client_id}`"),
                ),
            )
            .await
        }
    }
}
