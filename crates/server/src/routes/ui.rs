//! `GET /`: the built-in chat UI, one HTML file compiled into the binary (no CDN: it works
//! offline). It talks to the same API as any client, with the key the user types when the server
//! asks for one; the page itself needs no key.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("../ui/index.html");

#[utoipa::path(get, path = "/", operation_id = "getChatUi", tag = "operations", security(()), responses((status = 200, description = "The chat UI (one self-contained HTML page).", content_type = "text/html", body = String)))]
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Everything the page loads is its own: no inline script from elsewhere can run.
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        INDEX,
    )
}
