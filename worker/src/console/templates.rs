//! The page frame and small shared pieces. maud escapes every value it
//! renders, so text from the ledger or the queue can never become markup.

use maud::{DOCTYPE, Markup, html};
use time::OffsetDateTime;

use super::session::Session;

/// The whole style sheet, served at `/console.css`: small, no build step.
pub const CSS: &str = "\
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#1d3557;color:#fff;padding:.5rem 1rem;display:flex;gap:1.5rem;align-items:center;flex-wrap:wrap}
header a{color:#fff}
header form{margin-left:auto}
main{padding:1rem;max-width:72rem}
a{color:#0b57d0}
a:focus,button:focus,input:focus,select:focus{outline:3px solid #f4a261;outline-offset:1px}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem;background:#fff}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.9em;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:.5rem 0 1rem}
dt{font-weight:600}
dd{margin:0}
form.search{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.5rem 1rem;align-items:end}
label{display:block;font-weight:600}
input,select,button{font:inherit;padding:.3rem}
button{cursor:pointer}
button.danger{background:#b00020;color:#fff;border:0}
.bad{color:#b00020;font-weight:600}
.ok{color:#1b7f3b;font-weight:600}
.note{color:#555}
.skip{position:absolute;left:-999px}
.skip:focus{left:1rem;top:.5rem;background:#fff;color:#000;padding:.3rem}
";

/// A full page: the navigation (with the sign-out form) when signed in.
pub fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · callsync console" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    strong { "callsync console" }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            a href="/" { "Overview" } " · "
                            a href="/calls" { "Calls" } " · "
                            a href="/parked" { "Parked" }
                        }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(session.csrf());
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    }
}

/// A time as UTC, to the second.
pub fn at(time: OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An optional time, or a dash.
pub fn maybe_at(time: Option<OffsetDateTime>) -> String {
    time.map_or_else(|| "–".to_owned(), at)
}

/// The hidden CSRF field every form that changes something carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}

/// The path of a call's story page.
pub fn call_path(source: &str, call_id: &str) -> String {
    format!("/calls/{}/{}", segment(source), segment(call_id))
}

/// Percent-encodes one path segment.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Text cut to `max` characters, for tables (the full text is on the
/// call's page).
pub fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_id_with_slashes_stays_one_path_segment() {
        assert_eq!(call_path("vapi", "a/b c"), "/calls/vapi/a%2Fb%20c");
    }

    #[test]
    fn rendered_text_is_escaped() {
        let page = page("<x>", None, html! { p { ("<script>alert(1)</script>") } });
        let page = page.into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
    }
}
