//! The frame of every console page: the document head, the navigation, sign-out.

use maud::{DOCTYPE, Markup, html};

use super::Session;

/// A section of the console, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Fleet,
    Catalog,
    Overlays,
    Rollouts,
    Audit,
    Tokens,
    None,
}

/// A whole page: `title` is the document's and the page's heading.
pub fn page(title: &str, section: Section, session: Option<&Session>, body: Markup) -> Markup {
    refreshing_page(title, section, session, body, None)
}

/// `page`, reloaded every `refresh` seconds while shown (a running rollout's page), by the
/// console's one script file (`assets/follow.js`; the CSP allows no inline script).
pub fn refreshing_page(
    title: &str,
    section: Section,
    session: Option<&Session>,
    body: Markup,
    refresh: Option<u32>,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh.is_some() { script src="/ui/static/follow.js" defer {} }
                title { (title) " · flux-inputs" }
                link rel="stylesheet" href="/ui/static/console.css";
                link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml";
            }
            body data-follow=[refresh] {
                a.skip href="#main" { "Skip to the content" }
                header {
                    a.brand href="/ui/" { "flux-inputs" }
                    @if let Some(session) = session {
                        nav aria-label="Console" {
                            a href="/ui/" aria-current=[current(section, Section::Fleet)] { "Fleet" }
                            a href="/ui/catalog" aria-current=[current(section, Section::Catalog)] { "Catalog" }
                            a href="/ui/overlays" aria-current=[current(section, Section::Overlays)] { "Overlays" }
                            a href="/ui/rollouts" aria-current=[current(section, Section::Rollouts)] { "Rollouts" }
                            @if session.access == super::Access::Write {
                                a href="/ui/audit" aria-current=[current(section, Section::Audit)] { "Audit" }
                                a href="/ui/tokens" aria-current=[current(section, Section::Tokens)] { "Tokens" }
                            }
                        }
                        span.muted {
                            @match session.access {
                                super::Access::Write => "signed in to write",
                                super::Access::Read => "signed in to read",
                            }
                        }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.secondary type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn current(section: Section, link: Section) -> Option<&'static str> {
    (section == link).then_some("page")
}

/// A convergence state as a coloured, labelled badge.
pub fn state(state: &str) -> Markup {
    html! { span class=(format!("state state-{state}")) { (state) } }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn age(seconds: u64) -> String {
    format!("{} ago", duration(seconds, false))
}

/// A time ahead, as "in 3 h", to the nearest unit: an opening 9 h 59 min 59 s away is "in
/// 10 h", not "in 9 h".
pub fn ahead(seconds: u64) -> String {
    format!("in {}", duration(seconds, true))
}

fn duration(seconds: u64, nearest: bool) -> String {
    let count = |unit: u64| {
        if nearest {
            (seconds + unit / 2) / unit
        } else {
            seconds / unit
        }
    };
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", count(60)),
        3600..86400 => format!("{} h", count(3600)),
        _ => format!("{} d", count(86400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(5), "5 s ago");
        assert_eq!(age(125), "2 min ago");
        assert_eq!(age(7200), "2 h ago");
        assert_eq!(age(3 * 86400), "3 d ago");
        assert_eq!(age(10 * 3600 - 1), "9 h ago");
        assert_eq!(ahead(10 * 3600 - 1), "in 10 h");
        assert_eq!(ahead(3600 + 60), "in 1 h");
    }

    #[test]
    fn text_is_escaped() {
        let markup = page("<script>", Section::None, None, html! { p { ("a&b") } });
        let text = markup.into_string();
        assert!(text.contains("&lt;script&gt;") && text.contains("a&amp;b"));
        assert!(!text.contains("<script>"));
    }
}
