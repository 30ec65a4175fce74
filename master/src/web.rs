//! The master's web pages: the browser demo at `/`, the admin dashboard at `/admin` and
//! their assets, all compiled into the binary from `master/web/`, a game's own pages,
//! and the admin token check that guards the dashboard, `/status` and `/metrics`.

use std::borrow::Cow;

use axum::Form;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::http::{HttpState, error};

/// The cookie the login form sets; its value is the admin token itself, so the master
/// keeps no session table. `HttpOnly` keeps it from page scripts, `SameSite=Strict`
/// from other sites' forms.
const COOKIE: &str = "centrum_admin";

/// The cookie's `Secure` attribute when the master serves https://: the browser then
/// never sends it over plain http://.
fn secure(state: &HttpState) -> &'static str {
    if state.tls.is_some() { "; Secure" } else { "" }
}

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

/// `POST /admin/login` (form field `token`): sets the cookie and goes to the dashboard,
/// or back to the form with `?login=failed`.
pub(crate) async fn login(State(state): State<HttpState>, Form(login): Form<Login>) -> Response {
    let Some(expected) = &state.config.master.admin_token else {
        return Redirect::to("/admin").into_response();
    };
    if !expected.matches(&login.token) {
        tracing::warn!("admin login with a wrong token");
        return Redirect::to("/admin?login=failed").into_response();
    }
    // Invariant: the config only accepts printable ASCII tokens without ';' or ','.
    let cookie = HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}",
        expected.expose(),
        secure(&state)
    ))
    .expect("a validated admin token is a valid header value");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin")).into_response()
}

/// `POST /admin/logout`: clears the cookie.
pub(crate) async fn logout(State(state): State<HttpState>) -> Response {
    let secure = secure(&state);
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    // Invariant: built from constants only.
    let clear = HeaderValue::from_str(&clear).expect("a constant cookie is a valid header");
    ([(header::SET_COOKIE, clear)], Redirect::to("/admin")).into_response()
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

/// True when no token is configured, or the request carries it as a bearer token or in
/// the login cookie.
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
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, token)| token)
        .any(|token| expected.matches(token));
    bearer || cookie
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
