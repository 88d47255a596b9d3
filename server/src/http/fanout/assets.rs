//! The page, its scripts and the wasm globe, embedded at build time (see
//! `server/build.rs`), served from memory. Each file is gzipped once, when
//! the server starts, and carries an `ETag`, so that a reload (a kiosk's
//! recovery included) costs a `304` and a first visit the gzipped bytes:
//! what a phone downloads is the budget in docs/BENCHMARKS.md.

use std::io::Write as _;
use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use flate2::write::GzEncoder;

pub struct Asset {
    pub path: &'static str,
    pub mime: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// An asset ready to send.
struct Prepared {
    asset: &'static Asset,
    /// `None` when gzip would not make it smaller.
    gzip: Option<Bytes>,
    etag: HeaderValue,
}

static PREPARED: LazyLock<Vec<Prepared>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let gzip = gz
                .write_all(asset.bytes)
                .and_then(|()| gz.finish())
                .unwrap_or_default();
            let hash = xxhash_rust::xxh3::xxh3_64(asset.bytes);
            Prepared {
                asset,
                gzip: (!gzip.is_empty() && gzip.len() < asset.bytes.len()).then(|| gzip.into()),
                etag: HeaderValue::from_str(&format!("\"{hash:016x}\""))
                    .unwrap_or(HeaderValue::from_static("\"0\"")),
            }
        })
        .collect()
});

/// Compresses every asset now rather than on the first request.
pub fn prepare() {
    LazyLock::force(&PREPARED);
}

/// Whether this binary carries the built globe.
pub fn wasm_embedded() -> bool {
    WASM_EMBEDDED
}

pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let path = match uri.path() {
        "/" => "/index.html",
        p => p,
    };
    let Some(file) = PREPARED.iter().find(|p| p.asset.path == path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().as_bytes() == file.etag.as_bytes())
        });
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match &file.gzip {
            Some(gzip) if super::accepts_gzip(&headers) => {
                let mut r = gzip.clone().into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => Bytes::from_static(file.asset.bytes).into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.asset.mime),
    );
    // The page must pick up a new build on reload; the ETag makes asking
    // cheap.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::ETAG, file.etag.clone());
    response
}
