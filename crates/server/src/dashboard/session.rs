//! The dashboard's session, for services whose reads need a key (`auth.reads`): a page asked for
//! without one answers with a prompt; the key given there is checked and kept by the browser in
//! an HttpOnly cookie, because a page's `EventSource` cannot send an `Authorization` header and
//! a script should never hold the key. The cookie is `SameSite=Strict` and every write it
//! carries must come from this service's own pages (`crate::auth::same_origin`).

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cookie::{Cookie, SameSite};
use maud::html;

use super::layout;
use crate::AppState;
use crate::auth::{SESSION_COOKIE, same_origin};

/// Where the prompt's form is sent.
pub(crate) const PATH: &str = "/dashboard/session";

/// Where a session ends.
pub(crate) const END_PATH: &str = "/dashboard/session/end";

#[derive(serde::Deserialize)]
pub(super) struct KeyForm {
    key: String,
    #[serde(default)]
    next: String,
}

/// The prompt for a key, answered with `status` to a request for the page at `next`.
pub(crate) fn prompt(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "An API key, please" }
        p.muted { "Reading this ledger needs a key. It is checked once and kept by this browser for the session, out of reach of the pages' scripts." }
        form #key-prompt method="post" action=(PATH) {
            input type="hidden" name="next" value=(next);
            div.fields {
                label { "API key " input #key name="key" type="password" size="48" autocomplete="off" required autofocus; }
                button type="submit" { "Open the dashboard" }
            }
            @if let Some(e) = error { p.bad role="alert" #key-error { (e) } }
        }
    };
    (status, layout::page("API key", "", None, body)).into_response()
}

/// Makes `answer` end the browser's session (its key no longer works).
pub(crate) fn forget(mut answer: Response) -> Response {
    answer
        .headers_mut()
        .append(header::SET_COOKIE, cookie_header(&ended()));
    answer
}

/// `POST /dashboard/session`: checks the key and starts a session with it.
pub(super) async fn start(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let next = safe_next(&form.next);
    // Else another site could sign a visitor in with its own key.
    if !same_origin(&headers) {
        return prompt(
            StatusCode::FORBIDDEN,
            next,
            Some("This form can only be sent from this service's own page."),
        );
    }
    let key = form.key.trim();
    match app.ledger.authenticate(key).await {
        Ok(_) => {
            let secure = headers
                .get("x-forwarded-proto")
                .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
            let session = Cookie::build((SESSION_COOKIE, key.to_owned()))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(secure)
                .build();
            let mut answer = Redirect::to(next).into_response();
            answer
                .headers_mut()
                .insert(header::SET_COOKIE, cookie_header(&session));
            answer
        }
        Err(e) => prompt(StatusCode::UNAUTHORIZED, next, Some(&e.to_string())),
    }
}

/// `POST /dashboard/session/end`: forgets the key.
pub(super) async fn end() -> Response {
    forget(Redirect::to(super::ROOT).into_response())
}

fn ended() -> Cookie<'static> {
    let mut c = Cookie::build((SESSION_COOKIE, "")).path("/").build();
    c.make_removal();
    c
}

fn cookie_header(c: &Cookie<'_>) -> HeaderValue {
    // A key is `tl_` and URL-safe characters; the server made it, so it is a valid value.
    HeaderValue::from_str(&c.to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// Only pages of the dashboard are places to go back to (never another site).
fn safe_next(next: &str) -> &str {
    let inside = next == super::ROOT
        || next
            .strip_prefix(super::ROOT)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'));
    if inside && !next.contains("//") && !next.contains('\\') {
        next
    } else {
        super::ROOT
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_dashboard_pages_are_returned_to() {
        assert_eq!(
            safe_next("/dashboard/twins/a?version=2"),
            "/dashboard/twins/a?version=2"
        );
        assert_eq!(safe_next("/dashboard?prefix=p"), "/dashboard?prefix=p");
        for outside in [
            "https://evil.example/",
            "//evil.example",
            "/dashboard//evil",
            "/dashboardx",
            "/v1/twins",
            "",
            "/dashboard/\\evil",
        ] {
            assert_eq!(safe_next(outside), "/dashboard", "{outside}");
        }
    }
}
