//! The control page: a string of Christmas lights over a small town, served over HTTP and
//! updated live with server-sent events.
//!
//! Routes:
//! - `GET /`: the page. Self-contained (inline SVG, CSS and script; it loads nothing, and
//!   its Content-Security-Policy forbids loading anything from elsewhere). It never
//!   contains the flag.
//! - `GET /events`: server-sent events named `state`, one now and one per change:
//!   `{"lights":"off","connected":true}`; `"flag"` is added only while the lights are on.
//! - `GET /state`: the same JSON once.
//!
//! Each event stream holds one task and one watch receiver; there is no per-client queue
//! (a slow page only ever misses intermediate states, never the latest). At most
//! [`MAX_EVENT_STREAMS`] streams are open at once; beyond that `/events` answers 503 and the
//! browser retries later.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::{DeviceState, Error, Scenario};

const TEMPLATE: &str = include_str!("page.html");

/// Nothing may be loaded from anywhere: scripts and styles are inline, images are data URLs,
/// and the only connection is the event stream back to this server.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'";

/// Most live pages at once.
pub const MAX_EVENT_STREAMS: usize = 256;

#[derive(Clone)]
struct PageState {
    html: Arc<str>,
    flag: Arc<str>,
    device: watch::Receiver<DeviceState>,
    shutdown: CancellationToken,
    streams: Arc<Semaphore>,
}

/// The page's routes. `broker` is shown on the page (e.g. `127.0.0.1:1883`); `device`
/// follows the lights; event streams end when `shutdown` is cancelled (so a graceful HTTP
/// shutdown does not wait for open pages).
pub fn router(
    scenario: &Scenario,
    broker: &str,
    device: watch::Receiver<DeviceState>,
    shutdown: CancellationToken,
) -> Router {
    let state = PageState {
        html: render(scenario, broker).into(),
        flag: scenario.flag.as_str().into(),
        device,
        shutdown,
        streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
    };
    Router::new()
        .route("/", get(index))
        .route("/events", get(events))
        .route("/state", get(current))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(Error::Http)
}

async fn index(State(state): State<PageState>) -> Response {
    let mut response = Html(state.html.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn current(State(state): State<PageState>) -> Response {
    let snapshot = *state.device.borrow();
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        state_json(snapshot, &state.flag),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn events(State(state): State<PageState>) -> Response {
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        // Too many open pages: the browser's EventSource retries by itself.
        return (StatusCode::SERVICE_UNAVAILABLE, "too many open pages").into_response();
    };
    let PageState {
        flag,
        mut device,
        shutdown,
        ..
    } = state;
    device.mark_changed();
    let stream = futures_util::stream::unfold(
        (device, flag, shutdown, permit),
        |(mut device, flag, shutdown, permit)| async move {
            tokio::select! {
                changed = device.changed() => changed.ok()?,
                () = shutdown.cancelled() => return None,
            }
            let snapshot = *device.borrow_and_update();
            let event = Event::default()
                .event("state")
                .data(state_json(snapshot, &flag));
            Some((Ok::<_, Infallible>(event), (device, flag, shutdown, permit)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The state as the page receives it. The flag is in it only while the lights are on.
fn state_json(state: DeviceState, flag: &str) -> String {
    let mut value = serde_json::json!({
        "lights": if state.on { "on" } else { "off" },
        "connected": state.connected,
    });
    if state.on {
        value["flag"] = serde_json::Value::from(flag);
    }
    value.to_string()
}

/// The page's HTML for a scenario. It never contains the flag.
fn render(scenario: &Scenario, broker: &str) -> String {
    let story = story_html(&scenario.story);
    // A JSON string literal inside a script: `<` escaped so no `</script>` can close it.
    let broker_json = serde_json::Value::from(broker)
        .to_string()
        .replace('<', "\\u003c");
    let mut out = String::with_capacity(TEMPLATE.len() + 16 * 1024);
    let mut rest = TEMPLATE;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        match &after[..end] {
            "title" => out.push_str(&escape(&scenario.title)),
            "success" => out.push_str(&escape(&scenario.success)),
            "broker" => out.push_str(&escape(broker)),
            "broker_json" => out.push_str(&broker_json),
            "story" => out.push_str(&story),
            "scene" => out.push_str(&scene_svg(scenario)),
            other => {
                // Not a placeholder: keep it as it is.
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Paragraphs separated by blank lines; single line breaks are spaces.
fn story_html(story: &str) -> String {
    let mut out = String::new();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, out: &mut String| {
        if !paragraph.is_empty() {
            let _ = writeln!(out, "      <p>{}</p>", escape(&paragraph.join(" ")));
            paragraph.clear();
        }
    };
    for line in story.lines() {
        let line = line.trim();
        if line.is_empty() {
            flush(&mut paragraph, &mut out);
        } else {
            paragraph.push(line);
        }
    }
    flush(&mut paragraph, &mut out);
    out
}

/// A small deterministic generator, so the town looks the same on every load.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as f64) / f64::from(1u32 << 31)
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

const W: f64 = 1200.0;
const H: f64 = 540.0;
const GROUND: f64 = 470.0;
const WIRE_Y: f64 = 118.0;

/// The scene: sky, moon, stars, the town, its tree, snow, and the string of lights.
fn scene_svg(scenario: &Scenario) -> String {
    let mut s = String::with_capacity(48 * 1024);
    let mut rng = Lcg(0x5eed_2024);
    let _ = write!(
        s,
        r##"<svg viewBox="0 0 {W} {H}" preserveAspectRatio="xMidYMid slice" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="A string of Christmas lights over the town square">
<defs>
  <linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#050817"/><stop offset="0.6" stop-color="#111a42"/><stop offset="1" stop-color="#1f2a5c"/></linearGradient>
  <radialGradient id="warm" cx="0.5" cy="1" r="0.75"><stop offset="0" stop-color="#ffb45c" stop-opacity="0.35"/><stop offset="1" stop-color="#ffb45c" stop-opacity="0"/></radialGradient>
  <linearGradient id="snow" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#f1f5fd"/><stop offset="1" stop-color="#b7c4de"/></linearGradient>
  <radialGradient id="moonlight" cx="0.5" cy="0.5" r="0.5"><stop offset="0.45" stop-color="#fff8dc" stop-opacity="0.35"/><stop offset="1" stop-color="#fff8dc" stop-opacity="0"/></radialGradient>
  <filter id="glow" x="-100%" y="-100%" width="300%" height="300%"><feGaussianBlur stdDeviation="4" result="b"/><feMerge><feMergeNode in="b"/><feMergeNode in="SourceGraphic"/></feMerge></filter>
  <filter id="soft" x="-50%" y="-50%" width="200%" height="200%"><feGaussianBlur stdDeviation="2.2" result="b"/><feMerge><feMergeNode in="b"/><feMergeNode in="SourceGraphic"/></feMerge></filter>
  <filter id="halo" x="-100%" y="-100%" width="300%" height="300%"><feGaussianBlur stdDeviation="7"/></filter>
</defs>
<rect width="{W}" height="{H}" fill="url(#sky)"/>
<rect class="sky-warm" width="{W}" height="{H}" fill="url(#warm)"/>
"##
    );

    // Stars.
    s.push_str("<g>");
    for _ in 0..70 {
        let _ = write!(
            s,
            r#"<circle class="star" cx="{:.0}" cy="{:.0}" r="{:.1}" style="--d:{:.1}s"/>"#,
            rng.range(0.0, W),
            rng.range(6.0, 330.0),
            rng.range(0.5, 1.6),
            -rng.range(0.0, 5.0)
        );
    }
    s.push_str("</g>\n");

    // The moon.
    s.push_str(
        r##"<circle cx="1045" cy="78" r="90" fill="url(#moonlight)"/>
<circle cx="1045" cy="78" r="34" fill="#f6f1da"/>
<circle cx="1033" cy="70" r="7" fill="#e6dfc0"/><circle cx="1056" cy="90" r="5" fill="#e6dfc0"/><circle cx="1052" cy="64" r="3.5" fill="#e6dfc0"/>
"##,
    );

    // Distant hills.
    s.push_str(r##"<path d="M0 392 Q 140 340 290 378 T 600 366 T 900 352 T 1200 374 V540 H0 Z" fill="#0d1433"/>
<path d="M0 420 Q 200 384 420 410 T 820 400 T 1200 408 V540 H0 Z" fill="#101838"/>
"##);

    town(&mut s, &mut rng, scenario);

    // Snow on the ground.
    let _ = writeln!(
        s,
        r#"<path d="M0 {g} Q 300 {a} 600 {b} T 1200 {c} V{H} H0 Z" class="ground"/>"#,
        g = GROUND,
        a = GROUND - 14.0,
        b = GROUND - 2.0,
        c = GROUND - 8.0
    );

    lights(&mut s, scenario);

    // Falling snow.
    s.push_str("<g>");
    for _ in 0..55 {
        let _ = write!(
            s,
            r#"<circle class="flake" cx="{:.0}" cy="0" r="{:.1}" style="--t:{:.1}s;--d:{:.1}s;--x:{:.0}px"/>"#,
            rng.range(0.0, W),
            rng.range(0.8, 2.4),
            rng.range(9.0, 18.0),
            -rng.range(0.0, 18.0),
            rng.range(-60.0, 60.0)
        );
    }
    s.push_str("</g>\n</svg>");
    s
}

/// Houses, the town hall and the tree in the square.
fn town(s: &mut String, rng: &mut Lcg, scenario: &Scenario) {
    // Houses left and right of the square (which is x 520..680).
    let mut x = -20.0;
    let kinds = ["", " b", " c"];
    let mut k = 0usize;
    while x < W {
        let w = rng.range(78.0, 128.0);
        if x + w > 500.0 && x < 700.0 {
            // The square: the town hall on its left, the tree in the middle.
            if x < 520.0 {
                town_hall(s, 395.0);
            }
            x = 700.0;
            continue;
        }
        let h = rng.range(72.0, 140.0);
        house(s, rng, x, w, h, kinds[k % kinds.len()]);
        k += 1;
        x += w + rng.range(6.0, 22.0);
    }
    tree(s, 600.0, scenario);
}

fn house(s: &mut String, rng: &mut Lcg, x: f64, w: f64, h: f64, kind: &str) {
    let top = GROUND - h;
    let roof = rng.range(26.0, 46.0);
    let _ = write!(
        s,
        r#"<g><rect class="house{kind}" x="{x:.0}" y="{top:.0}" width="{w:.0}" height="{h:.0}"/><path class="house{kind}" d="M{a:.0} {top:.0} L{m:.0} {r:.0} L{b:.0} {top:.0} Z"/><path class="roof-snow" d="M{a:.0} {top:.0} L{m:.0} {r:.0} L{b:.0} {top:.0} L{b2:.0} {t2:.0} L{m:.0} {r2:.0} L{a2:.0} {t2:.0} Z"/>"#,
        a = x - 6.0,
        b = x + w + 6.0,
        m = x + w / 2.0,
        r = top - roof,
        a2 = x + 2.0,
        b2 = x + w - 2.0,
        t2 = top + 3.0,
        r2 = top - roof + 7.0,
    );
    // A chimney on some houses.
    if rng.next() < 0.5 {
        let cx = x + w * rng.range(0.62, 0.78);
        let _ = write!(
            s,
            r#"<rect class="house{kind}" x="{cx:.0}" y="{:.0}" width="12" height="26"/><rect class="roof-snow" x="{:.0}" y="{:.0}" width="16" height="5" rx="2"/>"#,
            top - roof * 0.62 - 8.0,
            cx - 2.0,
            top - roof * 0.62 - 10.0
        );
    }
    // Windows: a grid, some warmly lit even in the dark.
    let cols = if w > 105.0 { 3 } else { 2 };
    let rows = if h > 110.0 { 2 } else { 1 };
    let gap_x = w / f64::from(cols + 1);
    for row in 0..rows {
        for col in 1..=cols {
            let wx = x + gap_x * f64::from(col) - 7.0;
            let wy = top + 18.0 + f64::from(row) * 38.0;
            let class = if rng.next() < 0.25 {
                "win warm"
            } else if rng.next() < 0.3 {
                "win dim"
            } else {
                "win"
            };
            let _ = write!(
                s,
                r#"<rect class="{class}" x="{wx:.0}" y="{wy:.0}" width="14" height="18" rx="2"/>"#
            );
        }
    }
    // A door.
    let _ = write!(
        s,
        r#"<rect class="door" x="{:.0}" y="{:.0}" width="16" height="26" rx="3"/></g>"#,
        x + w / 2.0 - 8.0,
        GROUND - 26.0
    );
    s.push('\n');
}

fn town_hall(s: &mut String, x: f64) {
    let _ = write!(
        s,
        r##"<g><rect class="house b" x="{x}" y="340" width="120" height="130"/><path class="house b" d="M{a} 340 L{m} 300 L{b} 340 Z"/><path class="roof-snow" d="M{a} 340 L{m} 300 L{b} 340 L{b2} 343 L{m} 307 L{a2} 343 Z"/><rect class="house c" x="{tx}" y="230" width="36" height="80"/><path class="house c" d="M{ta} 230 L{m} 196 L{tb} 230 Z"/><path class="roof-snow" d="M{ta} 230 L{m} 196 L{tb} 230 L{tb2} 233 L{m} 202 L{ta2} 233 Z"/><circle cx="{m}" cy="258" r="11" fill="#e9e2c2"/><path d="M{m} 258 V250 M{m} 258 H{h}" stroke="#1a1f38" stroke-width="2" stroke-linecap="round"/>"##,
        a = x - 8.0,
        b = x + 128.0,
        a2 = x,
        b2 = x + 120.0,
        m = x + 60.0,
        tx = x + 42.0,
        ta = x + 38.0,
        tb = x + 82.0,
        ta2 = x + 44.0,
        tb2 = x + 76.0,
        h = x + 66.0,
    );
    for (i, wx) in [x + 14.0, x + 46.0, x + 78.0].iter().enumerate() {
        let class = if i == 1 { "win warm" } else { "win" };
        let _ = write!(
            s,
            r#"<rect class="{class}" x="{wx}" y="360" width="28" height="34" rx="12"/>"#
        );
    }
    let _ = write!(
        s,
        r#"<rect class="door" x="{}" y="428" width="28" height="42" rx="10"/></g>"#,
        x + 46.0
    );
    s.push('\n');
}

fn tree(s: &mut String, x: f64, scenario: &Scenario) {
    let base = GROUND - 6.0;
    let _ = write!(
        s,
        r#"<g><rect class="trunk" x="{}" y="{}" width="16" height="22"/>"#,
        x - 8.0,
        base - 16.0
    );
    // Three tiers, widest at the bottom.
    for (i, (half, top, bottom)) in [
        (70.0, 300.0, base - 10.0),
        (56.0, 262.0, 370.0),
        (40.0, 226.0, 318.0),
    ]
    .iter()
    .enumerate()
    {
        let _ = write!(
            s,
            r#"<path class="tree" d="M{x} {top} L{r} {bottom} Q{x} {q} {l} {bottom} Z"/><path class="tree-snow" d="M{x} {top} L{sr} {sb} Q{x} {sq} {sl} {sb} Z"/>"#,
            r = x + half,
            l = x - half,
            q = bottom - 12.0,
            sr = x + half * 0.28,
            sl = x - half * 0.28,
            sb = top + (bottom - top) * 0.28,
            sq = top + (bottom - top) * 0.22,
        );
        let _ = i;
    }
    // Baubles in the lights' colours.
    let colours = &scenario.lights.colours;
    let spots = [
        (-40.0, 430.0),
        (-10.0, 442.0),
        (25.0, 436.0),
        (52.0, 446.0),
        (-58.0, 450.0),
        (-28.0, 398.0),
        (8.0, 404.0),
        (38.0, 392.0),
        (-20.0, 352.0),
        (18.0, 346.0),
        (-4.0, 300.0),
        (26.0, 308.0),
        (-26.0, 312.0),
    ];
    for (i, (dx, y)) in spots.iter().enumerate() {
        let c = &colours[i % colours.len()];
        let _ = write!(
            s,
            r#"<circle class="bauble" cx="{}" cy="{y}" r="4.5" style="--c:{c}"/>"#,
            x + dx
        );
    }
    // The star.
    let mut star = String::new();
    for i in 0..10 {
        let r = if i % 2 == 0 { 16.0 } else { 6.5 };
        let a = std::f64::consts::PI * (f64::from(i) / 5.0) - std::f64::consts::FRAC_PI_2;
        let _ = write!(star, "{:.1},{:.1} ", x + r * a.cos(), 222.0 + r * a.sin());
    }
    let _ = write!(
        s,
        r#"<polygon class="tree-star" points="{}"/></g>"#,
        star.trim_end()
    );
    s.push('\n');
}

/// Two lamp posts and the wire between them, sagging in swags, with the bulbs on it.
fn lights(s: &mut String, scenario: &Scenario) {
    let n = scenario.lights.count.max(1);
    let left = 46.0;
    let right = W - 46.0;
    for px in [left, right] {
        let _ = write!(
            s,
            r#"<rect class="post" x="{}" y="{}" width="8" height="{}" rx="2"/><rect class="post" x="{}" y="{}" width="18" height="6" rx="2"/><circle class="post-lamp" cx="{px}" cy="{}" r="7"/>"#,
            px - 4.0,
            WIRE_Y - 18.0,
            GROUND - WIRE_Y + 18.0,
            px - 9.0,
            WIRE_Y - 10.0,
            WIRE_Y - 24.0,
        );
    }
    let swags = n.div_ceil(7).clamp(2, 6);
    let span = (right - left) / swags as f64;
    let sag = 34.0 + span * 0.12;
    // The wire.
    let mut d = format!("M{left} {WIRE_Y}");
    for i in 0..swags {
        let x0 = left + span * i as f64;
        let _ = write!(
            d,
            " Q{:.1} {:.1} {:.1} {WIRE_Y}",
            x0 + span / 2.0,
            WIRE_Y + 2.0 * sag,
            x0 + span
        );
    }
    let _ = writeln!(s, r#"<path class="wire" d="{d}"/>"#);

    // Bulbs, spread evenly over the swags.
    let colours = &scenario.lights.colours;
    s.push_str("<g class=\"string\">");
    for i in 0..n {
        let u = (i as f64 + 0.5) / n as f64 * swags as f64;
        let swag = (u.floor() as usize).min(swags - 1);
        let t = u - swag as f64;
        let x0 = left + span * swag as f64;
        let (p0, c, p1) = (
            (x0, WIRE_Y),
            (x0 + span / 2.0, WIRE_Y + 2.0 * sag),
            (x0 + span, WIRE_Y),
        );
        let x = (1.0 - t).powi(2) * p0.0 + 2.0 * (1.0 - t) * t * c.0 + t * t * p1.0;
        let y = (1.0 - t).powi(2) * p0.1 + 2.0 * (1.0 - t) * t * c.1 + t * t * p1.1;
        let dx = 2.0 * (1.0 - t) * (c.0 - p0.0) + 2.0 * t * (p1.0 - c.0);
        let dy = 2.0 * (1.0 - t) * (c.1 - p0.1) + 2.0 * t * (p1.1 - c.1);
        // Bulbs hang roughly down, tilted a little with the wire.
        let angle = dy.atan2(dx).to_degrees() * 0.55;
        let colour = &colours[i % colours.len()];
        // Neighbours twinkle out of step.
        let delay = -(((i * 7) % 13) as f64) * 0.21;
        let _ = write!(
            s,
            r#"<g class="bulb" transform="translate({x:.1} {y:.1}) rotate({angle:.1}) scale(1.25)" style="--c:{colour};--d:{delay:.2}s"><ellipse class="halo" cx="0" cy="16" rx="17" ry="20" filter="url(#halo)"/><rect class="cap" x="-3.5" y="-1" width="7" height="8" rx="1.5"/><path class="glass" d="M0 6 C7.5 8 8.5 18 0 27 C-8.5 18 -7.5 8 0 6 Z"/><ellipse class="shine" cx="-2.4" cy="13" rx="1.6" ry="3.6"/></g>"#
        );
    }
    s.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(on: bool, connected: bool) -> DeviceState {
        DeviceState {
            on,
            connected,
            subscribed: connected,
        }
    }

    #[test]
    fn the_page_never_holds_the_flag() {
        let scenario = Scenario::default();
        let html = render(&scenario, "127.0.0.1:1883");
        assert!(!html.contains(&scenario.flag));
        assert!(!html.contains("THM{"));
        assert!(html.contains("Wareville"));
        // Every placeholder was filled.
        assert!(!html.contains("{{"), "unfilled placeholder");
        // One bulb per light.
        assert_eq!(
            html.matches("class=\"bulb\"").count(),
            scenario.lights.count
        );
        // Nothing is loaded from elsewhere.
        for external in [
            "http://", "https://", "//cdn", "src=\"", "@import", "url(http",
        ] {
            let hits: Vec<_> = html
                .match_indices(external)
                .filter(|(i, _)| !html[*i..].starts_with("http://www.w3.org/2000/svg"))
                .collect();
            assert!(hits.is_empty(), "{external} in the page");
        }
    }

    #[test]
    fn scenario_text_is_escaped() {
        let text = r##"title = "<script>alert(1)</script>"
story = "a & b\n\n<b>c</b>"
[lights]
count = 3
colours = ["#f00"]"##;
        let scenario = Scenario::from_toml_str(text).unwrap();
        let html = render(&scenario, "127.0.0.1:1</script>");
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("<p>a &amp; b</p>"));
        assert!(html.contains("<p>&lt;b&gt;c&lt;/b&gt;</p>"));
        assert!(html.contains(r#""127.0.0.1:1\u003c/script>""#));
        assert_eq!(html.matches("class=\"bulb\"").count(), 3);
    }

    #[test]
    fn the_flag_is_in_the_state_only_while_on() {
        let off = state_json(state(false, true), "FLAG{x}");
        assert!(!off.contains("FLAG{x}"));
        let v: serde_json::Value = serde_json::from_str(&off).unwrap();
        assert_eq!(v["lights"], "off");
        assert_eq!(v["connected"], true);
        let on = state_json(state(true, false), "FLAG{x}");
        let v: serde_json::Value = serde_json::from_str(&on).unwrap();
        assert_eq!(v["lights"], "on");
        assert_eq!(v["flag"], "FLAG{x}");
    }

    #[test]
    fn stories_become_paragraphs() {
        assert_eq!(
            story_html("one\ntwo\n\n\nthree"),
            "      <p>one two</p>\n      <p>three</p>\n"
        );
        assert_eq!(story_html(""), "");
    }

    #[tokio::test]
    async fn open_event_streams_are_capped() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (_tx, rx) = watch::channel(state(false, true));
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(&Scenario::default(), "x", rx, shutdown.clone());
        let server = tokio::spawn(serve(listener, app, shutdown.clone()));
        async fn open(addr: std::net::SocketAddr) -> (tokio::net::TcpStream, String) {
            let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
            sock.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            (sock, String::from_utf8_lossy(&buf[..n]).into_owned())
        }
        let mut open_streams = Vec::new();
        for _ in 0..MAX_EVENT_STREAMS {
            let (sock, head) = open(addr).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            open_streams.push(sock);
        }
        let (_, head) = open(addr).await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        // A page that goes away frees its place.
        drop(open_streams.pop());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (sock, head) = open(addr).await;
            if head.starts_with("HTTP/1.1 200") {
                open_streams.push(sock);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the place was never freed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn endpoints_follow_the_device_and_hide_the_flag_while_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let scenario = Scenario::default();
        let flag = scenario.flag.clone();
        let (tx, rx) = watch::channel(state(false, true));
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            router(&scenario, "127.0.0.1:1883", rx, shutdown.clone()),
            shutdown.clone(),
        ));

        async fn get(addr: std::net::SocketAddr, path: &str) -> String {
            let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            sock.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            sock.read_to_string(&mut out).await.unwrap();
            out
        }

        let page = get(addr, "/").await;
        assert!(page.starts_with("HTTP/1.1 200"));
        assert!(page.contains("content-security-policy: default-src 'none'"));
        assert!(!page.contains(&flag));
        let st = get(addr, "/state").await;
        assert!(
            st.contains(r#""lights":"off""#) && !st.contains(&flag),
            "{st}"
        );
        assert!(get(addr, "/flag").await.starts_with("HTTP/1.1 404"));

        // A live event stream: the current state first, then each change.
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let mut read_until = async |needle: &str, seen: &mut String| {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while !seen.contains(needle) {
                let n = tokio::time::timeout_at(deadline, sock.read(&mut buf))
                    .await
                    .expect("timed out waiting for an event")
                    .unwrap();
                assert!(n > 0, "stream closed");
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        };
        read_until(r#""lights":"off""#, &mut seen).await;
        assert!(!seen.contains(&flag));
        tx.send_replace(state(true, true));
        read_until(&flag, &mut seen).await;
        tx.send_replace(state(false, true));
        seen.clear();
        read_until(r#""lights":"off""#, &mut seen).await;
        assert!(!seen.contains(&flag));

        // Shutdown ends open event streams, so the server stops.
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}
