//! The master's web pages: the browser demo at `/`, the admin dashboard at `/admin` and
//! their assets, all compiled into the binary from `master/web/`, a game's own pages,
//! and the admin token check that guards the dashboard, `/status` and `/metrics`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use axum::Form;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tokio::time::Instant;

use crate::http::{HttpState, error};

/// The cookie the login form sets; its value is a session id ([`crate::sessions`]), never the
/// admin token. `HttpOnly` keeps it from page scripts, `SameSite=Strict` from other
/// sites' forms, `Secure` (with TLS) off plain HTTP.
const COOKIE: &str = "centrum_admin";

/// A page or asset compiled into the binary.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const PLAY_HTML: &str = include_str!("../web/play.html");
const ADMIN_HTML: &str = include_str!("../web/admin.html");
const LOGIN_HTML: &str = include_str!("../web/login.html");

/// Everything under `/assets/`. `centrum.js` is the JavaScript client SDK, bundled from
/// `clients/js` by `npm run bundle` (a test there fails when it is stale).
const ASSETS: &[Asset] = &[
    Asset {
        name: "centrum.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/centrum.js"),
    },
    Asset {
        name: "play.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/play.js"),
    },
    Asset {
        name: "play.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/play.css"),
    },
    Asset {
        name: "admin.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/admin.js"),
    },
    Asset {
        name: "admin.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/admin.css"),
    },
];

#[derive(Debug, Deserialize)]
pub(crate) struct Login {
    token: String,
}

/// A page of a game's own, served by the master (for example its web client at `/`).
#[derive(Debug, Clone)]
pub struct Page {
    /// Where: `/`, `/lobby`, ... A path the master serves itself (`/gate`, `/admin`,
    /// `/assets/...`, `/status`, `/metrics`) stays the master's.
    pub path: String,
    pub content_type: Cow<'static, str>,
    pub body: Cow<'static, [u8]>,
}

impl Page {
    /// An HTML page at `path`.
    pub fn html(path: &str, body: &'static str) -> Self {
        Self {
            path: path.to_owned(),
            content_type: Cow::Borrowed("text/html; charset=utf-8"),
            body: Cow::Borrowed(body.as_bytes()),
        }
    }

    /// Any file at `path`, with its content type (`text/javascript`, `image/png`, ...).
    pub fn file(path: &str, content_type: &str, body: Vec<u8>) -> Self {
        Self {
            path: path.to_owned(),
            content_type: Cow::Owned(content_type.to_owned()),
            body: Cow::Owned(body),
        }
    }

    fn response(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, self.content_type.to_string()),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            self.body.to_vec(),
        )
            .into_response()
    }
}

/// `GET /`: the game's own page at `/` if it has one, else the arena demo, which asks
/// `/gate` for a front, so it plays on any cluster that serves an `arena` channel.
pub(crate) async fn play(State(state): State<HttpState>) -> Response {
    match state.pages.iter().find(|p| p.path == "/") {
        Some(page) => page.response(),
        None => html(StatusCode::OK, PLAY_HTML),
    }
}

/// Any other path: a game's page there, or 404.
pub(crate) async fn page_or_not_found(
    State(state): State<HttpState>,
    method: Method,
    uri: Uri,
) -> Response {
    match state.pages.iter().find(|p| p.path == uri.path()) {
        Some(page) if method == Method::GET || method == Method::HEAD => page.response(),
        _ => crate::http::not_found(method, uri).await,
    }
}

/// `GET /admin`: the dashboard, or the login form when a token is required and missing.
pub(crate) async fn admin(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if authorized(&state, &headers) {
        html(StatusCode::OK, ADMIN_HTML)
    } else {
        html(StatusCode::UNAUTHORIZED, LOGIN_HTML)
    }
}

/// `POST /admin/login` (form field `token`): opens a session, sets its cookie and goes to
/// the dashboard, or back to the form with `?login=failed`; 429 with `Retry-After` past
/// the address's allowance of attempts.
pub(crate) async fn login(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(login): Form<Login>,
) -> Response {
    let Some(expected) = &state.config.master.admin_token else {
        return Redirect::to("/admin").into_response();
    };
    if let Err(wait) = state.logins.check(peer.ip()) {
        state.counters.login_throttled.fetch_add(1, Relaxed);
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many login attempts from {}; retry in {seconds} s",
                peer.ip()
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        return response;
    }
    if !expected.matches(&login.token) {
        state.counters.login_failures.fetch_add(1, Relaxed);
        tracing::warn!(peer = %peer.ip(), "admin login with a wrong token");
        return Redirect::to("/admin?login=failed").into_response();
    }
    let opened = match state.sessions.open(Instant::now()) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for an admin session id");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot make a session id: the system has no randomness to give".into(),
            );
        }
    };
    if opened.evicted {
        state.counters.sessions_evicted.fetch_add(1, Relaxed);
    }
    let cookie = cookie(
        &opened.id,
        state.sessions.lifetime().as_secs(),
        state.secure_cookies,
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin")).into_response()
}

/// `POST /admin/logout`: ends the session and clears the cookie.
pub(crate) async fn logout(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    for id in cookie_values(&headers) {
        state.sessions.close(id);
    }
    let clear = cookie("", 0, state.secure_cookies);
    ([(header::SET_COOKIE, clear)], Redirect::to("/admin")).into_response()
}

/// The admin cookie carrying `value` for `max_age_s` seconds (0 clears it).
fn cookie(value: &str, max_age_s: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    // Invariant: the value is a session id in hex or empty; the rest is constant.
    HeaderValue::from_str(&cookie).expect("a hex session id makes a valid header value")
}

/// The values of every admin cookie the request carries.
fn cookie_values(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `GET /assets/{name}`.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                // Assets change with the binary, not by URL: always revalidate.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.body,
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no asset {name:?}")),
    }
}

/// Middleware for the admin API (`/status`, `/metrics`): 401 without the token.
pub(crate) async fn require_admin(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    if authorized(&state, request.headers()) {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "this cluster requires the admin token: send \"Authorization: Bearer <token>\" \
         or log in at /admin"
            .into(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"centrum admin\""),
    );
    response
}

/// True when no token is configured, or the request carries it as a bearer token, or a
/// cookie of a session in force.
fn authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.config.master.admin_token else {
        return true;
    };
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.strip_prefix("Bearer "))
        .any(|token| expected.matches(token.trim()));
    let now = Instant::now();
    bearer || cookie_values(headers).any(|id| state.sessions.is_live(id, now))
}

fn html(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_only_with_tls() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            cookie(id, 43_200, false),
            "centrum_admin=0123456789abcdef0123456789abcdef; Path=/; HttpOnly; SameSite=Strict; \
             Max-Age=43200"
        );
        assert_eq!(
            cookie(id, 43_200, true),
            "centrum_admin=0123456789abcdef0123456789abcdef; Path=/; HttpOnly; SameSite=Strict; \
             Max-Age=43200; Secure"
        );
        assert_eq!(
            cookie("", 0, true),
            "centrum_admin=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure"
        );
    }

    #[test]
    fn every_admin_cookie_of_a_request_is_read() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; centrum_admin=x"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("centrum_admin=y;centrum_admin_other=z"),
        );
        assert_eq!(cookie_values(&headers).collect::<Vec<_>>(), ["x", "y"]);
    }
}
