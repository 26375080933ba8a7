//! The service's half of the browser sign-in: redeem the one-time code with the app's verifier
//! at the portal (`POST {portal}/sign-in/redeem`, see [`ember_protocol::sign_in`]).

use std::time::Duration;

use ember_protocol::portal::{ErrorBody, ErrorCode};
use ember_protocol::sign_in::{REDEEM_PATH, RedeemRequest, RedeemResponse};

/// The whole exchange, TLS handshake included.
const REDEEM_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a code did not turn into a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("invalid portal URL: {0}")]
    InvalidUrl(String),
    #[error("cannot reach the portal: {0}")]
    Unreachable(String),
    /// The code is unknown, used or expired, or the verifier does not match: sign in again.
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("unexpected answer from the portal: {0}")]
    Protocol(String),
}

/// Posts `request` to the portal at `portal_url` (`https://…`, or `http://` where the caller
/// allows plain http) and returns the token it issued.
///
/// Redirects are not followed: a redirect would carry the code and the verifier to a place the
/// user did not choose.
pub async fn redeem_sign_in(
    portal_url: &str,
    request: &RedeemRequest,
) -> Result<RedeemResponse, RedeemError> {
    let url = redeem_url(portal_url)?;
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REDEEM_TIMEOUT)
        .build()
        .map_err(|e| RedeemError::Unreachable(format!("TLS setup failed: {e}")))?;
    let response = client
        .post(url)
        .json(request)
        .send()
        .await
        // Without the URL: reqwest's message names it, and nothing secret is in it anyway.
        .map_err(|e| RedeemError::Unreachable(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return response
            .json::<RedeemResponse>()
            .await
            .map_err(|e| RedeemError::Protocol(e.without_url().to_string()));
    }
    match response.json::<ErrorBody>().await {
        Ok(body) => Err(RedeemError::Refused {
            code: body.code,
            message: body.message,
        }),
        Err(_) => Err(RedeemError::Protocol(format!("HTTP {status}"))),
    }
}

/// `https://portal.example/base` → `https://portal.example/base/sign-in/redeem`.
fn redeem_url(portal_url: &str) -> Result<url::Url, RedeemError> {
    let mut url =
        url::Url::parse(portal_url).map_err(|e| RedeemError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RedeemError::InvalidUrl(format!(
            "unsupported scheme `{}` (expected https)",
            url.scheme()
        )));
    }
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}{REDEEM_PATH}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redeem_url_keeps_the_portal_base() {
        for (portal, expected) in [
            (
                "https://portal.example",
                "https://portal.example/sign-in/redeem",
            ),
            (
                "https://portal.example/base/",
                "https://portal.example/base/sign-in/redeem",
            ),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/sign-in/redeem",
            ),
        ] {
            assert_eq!(redeem_url(portal).unwrap().as_str(), expected);
        }
        assert!(redeem_url("ftp://portal.example").is_err());
    }
}
