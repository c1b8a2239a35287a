//! The frame every page shares: the navigation, the styles, the live script.

use axum::Extension;
use maud::{DOCTYPE, Markup, html};

use crate::auth::MaybeCaller;

/// The pages of the navigation, with the path each lives at.
const PAGES: [(&str, &str); 4] = [
    ("Fleet", super::ROOT),
    ("Events", "/dashboard/events"),
    ("Anchors", "/dashboard/anchors"),
    ("Verify", "/dashboard/verify"),
];

/// The key a page was asked for with, shown beside the way to end its session.
pub(super) fn key_id(caller: &MaybeCaller) -> Option<&str> {
    caller.as_ref().map(|Extension(c)| c.key_id.as_str())
}

/// A page titled `title` (`current` names its entry in the navigation) around `body`, for the
/// holder of the key `key_id` (when reads need one).
pub(super) fn page(title: &str, current: &str, key_id: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · twinledger" }
                link rel="stylesheet" href={ (super::ASSETS) "dashboard.css" };
                script type="module" src={ (super::ASSETS) "live.mjs" } {}
            }
            body {
                header {
                    a.brand href=(super::ROOT) { "twinledger" }
                    nav {
                        @for (name, path) in PAGES {
                            a href=(path) aria-current=[(name == current).then_some("page")] { (name) }
                        }
                    }
                    span #live title="Live updates from /v1/events" { "connecting" }
                    @if let Some(id) = key_id {
                        form.session method="post" action=(super::session::END_PATH) {
                            span.muted title="The API key of this session" { "key " code { (id) } }
                            button type="submit" { "End session" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A time in ms since the Unix epoch, in UTC, as the page shows it (`2026-12-07 18:07:33`);
/// the exact value is in the element's `datetime`.
pub(super) fn time(ms: i64) -> Markup {
    let text = jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| ms.to_string());
    html! { time datetime=(ms) { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert!(time(0).into_string().contains("1970-01-01 00:00:00"));
        // 2026-12-07 18:07:33.250 UTC.
        let shown = time(1_796_666_853_250).into_string();
        assert!(shown.contains("2026-12-07 18:07:33"), "{shown}");
        assert!(time(951_782_400_000).into_string().contains("2000-02-29"));
        assert!(time(-1000).into_string().contains("1969-12-31 23:59:59"));
    }
}
