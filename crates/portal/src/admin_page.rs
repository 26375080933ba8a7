//! The admin page (`admin-ui/`, built by `npm run build:admin`) served at [`PATH`]: its
//! `index.html` and hashed assets are read once at start from a folder, so a request can only
//! ever name a file that was there (no path from a URL reaches the file system).
//!
//! The folder is `[server] admin_page_dir`. Set, it must hold a build: a portal told to serve
//! a page it does not have refuses to start. Unset, the portal looks in [`DEFAULT_DIR`] (where
//! the Debian package installs it); without a build there it starts anyway (the API and the
//! clients need no page), warns once, and answers `/admin` with a 503 that says what is missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use tracing::{info, warn};

pub const PATH: &str = "/admin";

/// Where the Debian package installs the built page.
pub const DEFAULT_DIR: &str = "/usr/share/ember-portal/admin";

/// No inline script or style, nothing from elsewhere, no framing: the page talks only to this
/// portal's admin API.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

#[derive(Debug, thiserror::Error)]
pub enum AdminPageError {
    #[error(
        "the admin page folder {dir} has no index.html: build it with `npm ci && npm run \
         build:admin` (it lands in admin-ui/dist) or fix [server] admin_page_dir"
    )]
    NotBuilt { dir: PathBuf },
    #[error("cannot read the admin page file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file of the build, with what it is.
#[derive(Debug)]
pub struct File {
    content_type: &'static str,
    body: Vec<u8>,
}

/// The built page, or why there is none.
#[derive(Debug)]
pub enum AdminPage {
    Built(HashMap<String, File>),
    Missing(String),
}

impl AdminPage {
    /// Reads the page from `configured`, or from [`DEFAULT_DIR`] when that is `None` (see the
    /// module's docs for what a missing build does in each case).
    pub fn load(configured: Option<&Path>) -> Result<Self, AdminPageError> {
        match configured {
            Some(dir) => Self::read(dir),
            None => match Self::read(Path::new(DEFAULT_DIR)) {
                Ok(page) => Ok(page),
                Err(e) => {
                    warn!(error = %e, "the admin page is not served");
                    Ok(Self::Missing(e.to_string()))
                }
            },
        }
    }

    fn read(dir: &Path) -> Result<Self, AdminPageError> {
        let index = dir.join("index.html");
        if !index.is_file() {
            return Err(AdminPageError::NotBuilt {
                dir: dir.to_owned(),
            });
        }
        let mut files = HashMap::new();
        files.insert("index.html".to_owned(), read_file(&index)?);
        let assets = dir.join("assets");
        if assets.is_dir() {
            let read_error = |source| AdminPageError::Read {
                path: assets.clone(),
                source,
            };
            for entry in std::fs::read_dir(&assets).map_err(read_error)? {
                let path = entry.map_err(read_error)?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if path.is_file() {
                    files.insert(format!("assets/{name}"), read_file(&path)?);
                }
            }
        }
        info!(dir = %dir.display(), files = files.len(), "serving the admin page");
        Ok(Self::Built(files))
    }
}

fn read_file(path: &Path) -> Result<File, AdminPageError> {
    let body = std::fs::read(path).map_err(|source| AdminPageError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(File {
        content_type: content_type(path),
        body,
    })
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// The page's routes, to be merged at the root (they all start with [`PATH`]).
pub fn router<S>(page: Arc<AdminPage>) -> Router<S> {
    Router::new()
        .route(PATH, get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(serve))
        .route("/admin/{*file}", get(serve))
        .with_state(page)
}

async fn serve(State(page): State<Arc<AdminPage>>, uri: Uri) -> Response {
    let name = uri
        .path()
        .strip_prefix("/admin/")
        .filter(|n| !n.is_empty())
        .unwrap_or("index.html");
    let files = match page.as_ref() {
        AdminPage::Built(files) => files,
        AdminPage::Missing(why) => {
            let text = format!("The admin page is not installed on this portal: {why}\n");
            return with_headers(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                text.into_bytes(),
                false,
            );
        }
    };
    match files.get(name) {
        Some(file) => with_headers(
            StatusCode::OK,
            file.content_type,
            file.body.clone(),
            name.starts_with("assets/"),
        ),
        None => with_headers(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"no such file in the admin page\n".to_vec(),
            false,
        ),
    }
}

fn with_headers(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    hashed: bool,
) -> Response {
    let cache = if hashed {
        // Vite puts a content hash in every asset's name: a new build has new names.
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers: [(HeaderName, HeaderValue); 6] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ];
    (status, headers, body).into_response()
}
