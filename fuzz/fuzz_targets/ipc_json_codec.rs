//! Bytes on the tunnel service's socket (from any member of group `ember`) and on the app's
//! side of it: length-prefixed JSON frames decode to messages or errors, never a panic, never
//! a frame over the limit.
#![no_main]

use bytes::BytesMut;
use ember_protocol::codec::JsonCodec;
use ember_protocol::ipc::{ClientMessage, ServiceMessage};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder as _, Encoder as _};

const MAX_FRAME: usize = 64 * 1024;

fn decode_all<In: DeserializeOwned + serde::Serialize, Out>(data: &[u8]) {
    let mut codec = JsonCodec::<In, Out>::with_max_frame_len(MAX_FRAME);
    let mut buf = BytesMut::from(data);
    // Each frame takes at least its 4-byte header, so this bounds the loop.
    for _ in 0..=data.len() / 4 {
        match codec.decode(&mut buf) {
            Ok(Some(message)) => {
                // What came in goes out again in a frame of the same codec.
                let mut out = BytesMut::new();
                let mut encoder = JsonCodec::<(), In>::with_max_frame_len(usize::MAX);
                encoder.encode(message, &mut out).expect("a decoded message encodes");
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = codec.decode_eof(&mut buf);
}

fuzz_target!(|data: &[u8]| {
    decode_all::<ClientMessage, ServiceMessage>(data);
    decode_all::<ServiceMessage, ClientMessage>(data);
});
