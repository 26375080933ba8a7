//! Length-delimited JSON frames: a 4-byte big-endian length, then that many bytes of one JSON
//! message.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before any of the body is buffered, so a
//! peer cannot make the other side allocate more than that by announcing a huge frame.
//!
//! Frames carry the user's portal token (and sign-in secrets), so the codec wipes its own
//! copies: a decoded frame's bytes are zeroed in the read buffer, and the JSON an encoded
//! message is built in is zeroed once copied into the frame.

use std::io;
use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, Encoder};
use zeroize::{Zeroize as _, Zeroizing};

/// The largest frame either side sends or accepts.
pub const MAX_FRAME_LEN: usize = 1024 * 1024;

const LEN_PREFIX: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame is not a valid message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
}

/// Decodes frames into `In` and encodes `Out` into frames.
#[derive(Debug)]
pub struct JsonCodec<In, Out> {
    max_frame_len: usize,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> JsonCodec<In, Out> {
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            _types: PhantomData,
        }
    }
}

impl<In, Out> Default for JsonCodec<In, Out> {
    fn default() -> Self {
        Self::new()
    }
}

impl<In: DeserializeOwned, Out> Decoder for JsonCodec<In, Out> {
    type Item = In;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, FrameError> {
        let Some(prefix) = src.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_len,
            });
        }
        if src.len() < LEN_PREFIX + len {
            src.reserve(LEN_PREFIX + len - src.len());
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        let mut body = src.split_to(len);
        let message = serde_json::from_slice(&body);
        body.as_mut().zeroize();
        Ok(Some(message?))
    }
}

impl<In, Out: Serialize> Encoder<Out> for JsonCodec<In, Out> {
    type Error = FrameError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), FrameError> {
        let body = Zeroizing::new(serde_json::to_vec(&message)?);
        if body.len() > self.max_frame_len {
            return Err(FrameError::TooLarge {
                len: body.len(),
                max: self.max_frame_len,
            });
        }
        dst.reserve(LEN_PREFIX + body.len());
        // The prefix is 32 bits wide, whatever limit the codec was built with.
        dst.put_u32(u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
            len: body.len(),
            max: u32::MAX as usize,
        })?);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{ClientMessage, Request};

    type AppSide = JsonCodec<ClientMessage, ClientMessage>;

    fn hello() -> ClientMessage {
        ClientMessage::Hello {
            protocol_version: 1,
            client_version: "test".into(),
        }
    }

    #[test]
    #[allow(unsafe_code)] // reads the buffer's memory to see that the token is gone from it
    fn a_decoded_frame_is_wiped_from_the_read_buffer() {
        let message = ClientMessage::Request {
            id: 1,
            request: Request::ResumeSession {
                portal_url: "https://portal.example.com".into(),
                token: crate::SecretToken::new("very-secret-token-0123456789"),
            },
        };
        let mut buf = BytesMut::with_capacity(4096);
        AppSide::new().encode(message.clone(), &mut buf).unwrap();
        let start = buf.as_ptr();
        let len = buf.len();
        let decoded = AppSide::new().decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, message);
        // `buf` still owns the allocation the frame was read into.
        // SAFETY: the allocation is alive (held by `buf`) and nothing writes to it meanwhile.
        let memory = unsafe { std::slice::from_raw_parts(start, len) };
        let text = String::from_utf8_lossy(memory);
        assert!(!text.contains("very-secret-token"), "{text}");
    }

    #[test]
    fn round_trips_a_message() {
        let mut codec = AppSide::new();
        let mut buf = BytesMut::new();
        codec.encode(hello(), &mut buf).unwrap();
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(hello()));
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_the_rest_of_a_split_frame() {
        let mut codec = AppSide::new();
        let mut whole = BytesMut::new();
        codec.encode(hello(), &mut whole).unwrap();
        codec
            .encode(
                ClientMessage::Request {
                    id: 7,
                    request: Request::GetState,
                },
                &mut whole,
            )
            .unwrap();

        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for byte in whole {
            buf.put_u8(byte);
            if let Some(message) = codec.decode(&mut buf).unwrap() {
                decoded.push(message);
            }
        }
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0], hello());
    }

    #[test]
    fn rejects_an_oversized_frame_before_buffering_it() {
        let mut codec = AppSide::with_max_frame_len(16);
        let mut buf = BytesMut::new();
        buf.put_u32(17);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: 17, max: 16 }),
            "{err}"
        );
    }

    #[test]
    fn refuses_to_send_an_oversized_frame() {
        let mut codec = AppSide::with_max_frame_len(8);
        let err = codec.encode(hello(), &mut BytesMut::new()).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn garbage_is_a_malformed_frame_not_a_panic() {
        let mut codec = AppSide::new();
        let mut buf = BytesMut::new();
        buf.put_u32(5);
        buf.extend_from_slice(b"\xff{]\x00x");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_request_kind_is_malformed() {
        let mut codec = AppSide::new();
        let body = br#"{"type":"request","id":1,"request":{"kind":"format_disk"}}"#;
        let mut buf = BytesMut::new();
        buf.put_u32(body.len() as u32);
        buf.extend_from_slice(body);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::Malformed(_))
        ));
    }
}
