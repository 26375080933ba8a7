//! The portal's side of the world: its TOML configuration (the model every scenario uses) and
//! the real browser sign-in flow, done with `curl` from a namespace.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use ember_protocol::SecretToken;
use ember_protocol::sign_in::{self, Verifier};

use crate::{Error, Result, addr, io_error};

pub const ACCOUNT: &str = "acme";
pub const HQ_SITE: &str = "HQ";
pub const HQ_GATEWAY: &str = "hq-1";
/// May use the HQ resources below except `Finance`.
pub const ADA: &str = "ada@acme.example";
/// May use one resource on each extra site (one gateway each): many connections at once.
pub const MULTI: &str = "multi@acme.example";
/// May use the bulk resources (for memory with many resources).
pub const BULK: &str = "bulk@acme.example";

pub const LAN_SERVERS: &str = "LAN servers";
pub const WEB: &str = "Web";
pub const APPS: &str = "Apps";
pub const FINANCE: &str = "Finance";
/// The internet resource through the HQ gateway (off until the user switches it on).
pub const INTERNET: &str = "Internet";

/// What the portal is configured with.
#[derive(Debug, Clone)]
pub struct Model {
    pub listen: SocketAddr,
    pub database: String,
    pub relay: SocketAddr,
    pub relay_secret: String,
    /// argon2 hash of the users' password (`ember-portal hash-password`).
    pub password_hash: String,
    /// Sites `Branch 1..=n`, each with gateway `branch-i` and resource `10.30.i.1/32` for `MULTI`.
    pub extra_sites: u8,
    /// Resources on HQ for `BULK`: half `/32`s in 10.40.0.0/16, half DNS names.
    pub bulk_resources: u32,
}

/// Site, gateway name and resource address of extra site `i` (1-based).
pub fn extra_site(i: u8) -> (String, String, std::net::Ipv4Addr) {
    (
        format!("Branch {i}"),
        format!("branch-{i}"),
        std::net::Ipv4Addr::new(10, 30, i, 1),
    )
}

pub fn config_toml(model: &Model) -> String {
    let mut sites = vec![format!("{HQ_SITE:?}")];
    let mut gateways = vec![format!("{{ site = {HQ_SITE:?}, name = {HQ_GATEWAY:?} }}")];
    let mut resources = vec![
        format!(
            "{{ name = {LAN_SERVERS:?}, site = {HQ_SITE:?}, address = {:?} }}",
            addr::CIDR_RESOURCE
        ),
        format!(
            "{{ name = {WEB:?}, site = {HQ_SITE:?}, address = {:?}, filters = [\"tcp/80\"] }}",
            addr::WEB_NAME
        ),
        format!(
            "{{ name = {APPS:?}, site = {HQ_SITE:?}, address = {:?} }}",
            addr::APPS_PATTERN
        ),
        format!(
            "{{ name = {FINANCE:?}, site = {HQ_SITE:?}, address = \"{}/32\" }}",
            addr::FINANCE
        ),
        format!("{{ name = {INTERNET:?}, site = {HQ_SITE:?}, address = \"internet\" }}"),
    ];
    let mut policies = vec![
        format!("{{ group = \"eng\", resource = {LAN_SERVERS:?} }}"),
        format!("{{ group = \"eng\", resource = {WEB:?} }}"),
        format!("{{ group = \"eng\", resource = {APPS:?} }}"),
        format!("{{ group = \"eng\", resource = {INTERNET:?} }}"),
    ];
    for i in 1..=model.extra_sites {
        let (site, gateway, address) = extra_site(i);
        sites.push(format!("{site:?}"));
        gateways.push(format!("{{ site = {site:?}, name = {gateway:?} }}"));
        resources.push(format!(
            "{{ name = \"{site} host\", site = {site:?}, address = \"{address}/32\" }}"
        ));
        policies.push(format!(
            "{{ group = \"multi\", resource = \"{site} host\" }}"
        ));
    }
    for i in 0..model.bulk_resources {
        let name = format!("Bulk {i}");
        let address = if i % 2 == 0 {
            let n = i / 2;
            format!("10.40.{}.{}/32", n / 250, n % 250 + 1)
        } else {
            format!("h{i}.bulk.corp.example")
        };
        resources.push(format!(
            "{{ name = {name:?}, site = {HQ_SITE:?}, address = {address:?} }}"
        ));
        policies.push(format!("{{ group = \"bulk\", resource = {name:?} }}"));
    }
    let hash = &model.password_hash;
    let mut toml = String::new();
    let _ = write!(
        toml,
        r#"# Written by ember-e2e.
[server]
listen = "{listen}"
database = "{database}"
change_poll_interval_ms = 200

[[relays]]
id = "relay-1"
urls = ["turn:{relay}"]
secret = "{secret}"
credential_lifetime_secs = 3600

[[accounts]]
slug = "{ACCOUNT}"
name = "Acme"
sites = [{sites}]
users = [
  {{ email = "{ADA}", name = "Ada Lovelace", password_hash = "{hash}" }},
  {{ email = "{MULTI}", name = "Multi Site", password_hash = "{hash}" }},
  {{ email = "{BULK}", name = "Bulk Resources", password_hash = "{hash}" }},
]
groups = [
  {{ name = "eng", members = ["{ADA}"] }},
  {{ name = "multi", members = ["{MULTI}"] }},
  {{ name = "bulk", members = ["{BULK}"] }},
]
gateways = [
  {gateways},
]
resources = [
  {resources},
]
policies = [
  {policies},
]
"#,
        listen = model.listen,
        database = model.database,
        relay = model.relay,
        secret = model.relay_secret,
        sites = sites.join(", "),
        gateways = gateways.join(",\n  "),
        resources = resources.join(",\n  "),
        policies = policies.join(",\n  "),
    );
    toml
}

/// What the app holds after the browser came back: the one-time code from the deep link and
/// the verifier it made at the start. The tunnel service redeems them.
#[derive(Debug)]
pub struct BrowserSignIn {
    pub code: SecretToken,
    pub verifier: SecretToken,
}

/// Signs in the way a person does in the browser the app opened, with `curl` from namespace
/// `ns`: GET the sign-in page (state and PKCE verifier made here, as the app makes them; the
/// page gets only the challenge), POST the password form with its CSRF token and cookie, take
/// the `ember://sign-in-callback?…` redirect and check its state (`crates/portal/README.md`).
/// `work` holds the cookie jar.
pub fn sign_in_through_browser(
    ns: &str,
    portal_url: &str,
    email: &str,
    password: &str,
    work: &Path,
) -> Result<BrowserSignIn> {
    let state = hex::encode(rand::random::<[u8; 32]>());
    let verifier = Verifier::from_random_bytes(&rand::random::<[u8; 32]>());
    let jar = work.join(format!(
        "cookies-{}",
        hex::encode(rand::random::<[u8; 4]>())
    ));
    let jar = jar.to_string_lossy().into_owned();

    let page_url = format!(
        "{}&account={ACCOUNT}",
        sign_in::sign_in_url(portal_url, &state, &verifier.challenge())
            .map_err(|e| Error::Failed(format!("bad portal URL {portal_url}: {e}")))?
    );
    let html = curl_text(ns, &["-sS", "--max-time", "10", "-c", &jar, &page_url])?;
    let attempt = hidden_field(&html, "attempt")?;
    let csrf = hidden_field(&html, "csrf")?;

    let answer = curl_text(
        ns,
        &[
            "-sS",
            "--max-time",
            "30",
            "-b",
            &jar,
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--data-urlencode",
            &format!("attempt={attempt}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            &format!("account={ACCOUNT}"),
            "--data-urlencode",
            &format!("email={email}"),
            "--data-urlencode",
            &format!("password={password}"),
            &format!("{portal_url}/sign-in"),
        ],
    )?;
    let _ = std::fs::remove_file(&jar);
    let status = answer.lines().next().unwrap_or_default();
    let location = answer
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .ok_or_else(|| Error::Failed(format!("sign-in was not redirected: {status}")))?;
    let link = url::Url::parse(&location)
        .map_err(|e| Error::Failed(format!("bad redirect {location}: {e}")))?;
    let callback = sign_in::Callback::parse(&link)
        .map_err(|e| Error::Failed(format!("unexpected redirect {location}: {e}")))?;
    if callback.state != state {
        return Err(Error::Failed(format!(
            "the callback's state does not match: {location}"
        )));
    }
    Ok(BrowserSignIn {
        code: callback.code,
        verifier: verifier.secret().clone(),
    })
}

/// Posts a redeem from namespace `ns` as the tunnel service does; the portal's HTTP status and
/// body.
pub fn redeem(
    ns: &str,
    portal_url: &str,
    code: &str,
    verifier: &str,
    public_key: &str,
) -> Result<(u16, serde_json::Value)> {
    let body = serde_json::json!({"code": code, "verifier": verifier, "public_key": public_key});
    let answer = curl_text(
        ns,
        &[
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body.to_string(),
            &format!("{portal_url}{}", sign_in::REDEEM_PATH),
        ],
    )?;
    let (json, status) = answer.rsplit_once('\n').unwrap_or(("", &answer));
    let status = status
        .trim()
        .parse()
        .map_err(|_| Error::Failed(format!("no HTTP status from curl: {answer}")))?;
    Ok((status, serde_json::from_str(json).unwrap_or_default()))
}

/// The HTTP status the portal answers a WebSocket upgrade of `path` (`/api/client`,
/// `/api/gateway`) with this bearer token: 101 when it accepts the token, 401/403 when not.
pub fn upgrade_status(ns: &str, portal_url: &str, path: &str, token: &str) -> Result<u16> {
    let key = base64_of_16_random_bytes();
    let output = ember_testbed::netns_command(ns, "curl")
        .args(["-sS", "--max-time", "3"])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
        .args(["-H", "Sec-WebSocket-Version: 13"])
        .arg("-H")
        .arg(format!("Sec-WebSocket-Key: {key}"))
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{portal_url}{path}"))
        .output()
        .map_err(io_error("run curl"))?;
    // After a 101 curl waits on the upgraded connection until --max-time: the code printed is
    // what counts.
    let code = String::from_utf8_lossy(&output.stdout);
    code.trim()
        .parse()
        .map_err(|_| Error::Failed(format!("curl printed no HTTP status: {code:?}")))
}

fn base64_of_16_random_bytes() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

fn curl_text(ns: &str, args: &[&str]) -> Result<String> {
    let output = ember_testbed::netns_command(ns, "curl")
        .args(args)
        .output()
        .map_err(io_error("run curl"))?;
    if !output.status.success() {
        return Err(Error::Curl {
            url: args.last().copied().unwrap_or_default().to_owned(),
            exit: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The value of `<input type="hidden" name="NAME" value="…">`.
fn hidden_field(html: &str, name: &str) -> Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .map(|i| i + marker.len())
        .ok_or_else(|| Error::Failed(format!("the sign-in page has no field `{name}`")))?;
    let end = html[start..]
        .find('"')
        .map(|i| i + start)
        .ok_or_else(|| Error::Failed(format!("the sign-in page's field `{name}` is cut")))?;
    Ok(html[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&amp;", "&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_are_found_and_unescaped() {
        let html = r#"<input type="hidden" name="attempt" value="a.b&amp;c"><input type="hidden" name="csrf" value="0f">"#;
        assert_eq!(hidden_field(html, "attempt").unwrap(), "a.b&c");
        assert_eq!(hidden_field(html, "csrf").unwrap(), "0f");
        assert!(hidden_field(html, "nonce").is_err());
    }

    #[test]
    fn the_model_is_valid_toml_with_every_part() {
        let model = Model {
            listen: "198.51.100.10:8080".parse().unwrap(),
            database: "sqlite:///tmp/x.db".into(),
            relay: "198.51.100.11:3478".parse().unwrap(),
            relay_secret: "s".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            extra_sites: 3,
            bulk_resources: 10,
        };
        let text = config_toml(&model);
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["accounts"][0]["resources"].as_array().unwrap().len(),
            5 + 3 + 10
        );
        assert!(text.contains("address = \"internet\""), "{text}");
        assert!(text.contains("\"Branch 3\""), "{text}");
        assert!(text.contains("10.30.3.1/32"), "{text}");
        assert!(text.contains("h9.bulk.corp.example"), "{text}");
        assert!(text.contains("10.40.0.5/32"), "{text}");
        assert!(text.contains("filters = [\"tcp/80\"]"), "{text}");
    }
}
