//! Screenshot tests of the HTML postmortem in headless Chromium, at 1200 px (a laptop) and 420 px
//! (a phone), for a rollback and a canary report and for 1 and 30 regions.
//!
//! Pixels are not compared (fonts differ between machines); what a reader needs is measured in
//! the rendered page instead: nothing wider than the screen, chart text at a readable size, a page
//! of reasonable length. A copy of the page gets a measuring script (the report itself runs no
//! script: its Content-Security-Policy forbids it, so the copy drops that header). Headless
//! Chromium's window is at least 500 px wide, so the page is laid out in an iframe of the exact
//! width. The screenshots are written to the test's target folder for a human to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::reports::chromium;
use crate::util::{code, fixture, run_in, stderr};

const MEASURE: &str = r#"<script>
(function () {
  var out = { width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
              height: document.documentElement.scrollHeight, svgs: 0, minFont: 1e9, overflowing: [] };
  document.querySelectorAll('svg').forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    // Charts carry their text size; the interval drawings have no text to shrink.
    if (r.width === 0 || !svg.getAttribute('font-size')) return;
    var scale = r.width / svg.viewBox.baseVal.width;
    out.svgs++;
    out.minFont = Math.min(out.minFont, parseFloat(svg.getAttribute('font-size')) * scale);
  });
  document.querySelectorAll('main *').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > window.innerWidth + 1 && !el.closest('.scroll')) {
      out.overflowing.push(el.tagName + '.' + el.className + ' ' + (el.textContent || '').slice(0, 40));
    }
  });
  out.overflowing = out.overflowing.slice(0, 10);
  parent.document.body.setAttribute('data-layout', JSON.stringify(out));
})();
</script>"#;

/// The page in an iframe exactly `width` px wide (its media queries see that width), with the
/// measuring script when `measured`.
fn framed(html: &Path, width: u32, height: u32, measured: bool, work: &Path) -> PathBuf {
    let mut page = std::fs::read_to_string(html).unwrap();
    if measured {
        let start = page
            .find("<meta http-equiv=\"Content-Security-Policy\"")
            .expect("the report has a CSP");
        let end = start + page[start..].find('>').unwrap() + 1;
        page = format!("{}{}", &page[..start], &page[end..])
            .replace("</body>", &format!("{MEASURE}</body>"));
    }
    let escaped = page.replace('&', "&amp;").replace('"', "&quot;");
    let frame = format!(
        "<!DOCTYPE html><html><body style=\"margin:0\"><iframe style=\"border:0;width:{width}px;height:{height}px\" srcdoc=\"{escaped}\"></iframe></body></html>"
    );
    let path = work.join(format!("frame-{width}-{measured}.html"));
    std::fs::write(&path, frame).unwrap();
    path
}

fn chromium_at(
    window: u32,
    height: u32,
    work: &Path,
    extra: &[String],
    page: &Path,
) -> std::process::Output {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={window},{height}"))
        .arg(format!(
            "--user-data-dir={}",
            work.join("profile").display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Renders `html` at `width` px and returns the layout the measuring script saw.
fn measure(html: &Path, width: u32, work: &Path) -> Value {
    let page = framed(html, width, 1000, true, work);
    let out = chromium_at(
        width.max(500) + 20,
        1000,
        work,
        &["--dump-dom".to_string()],
        &page,
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let attr = dom
        .split("data-layout=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| {
            panic!(
                "the measuring script ran: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(&attr.replace("&quot;", "\"").replace("&amp;", "&")).unwrap()
}

/// A screenshot of the page itself (no script), kept for a human to look at.
fn screenshot(html: &Path, name: &str, width: u32, work: &Path) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(format!("{name}-{width}.png"));
    let page = framed(html, width, 2400, false, work);
    chromium_at(
        width.max(500),
        2400,
        work,
        &[format!("--screenshot={}", png.display())],
        &page,
    );
    png
}

/// Renders the report of `incident` and checks it at both widths.
fn check_layout(name: &str, dir: &Path, incident: &str, max_phone_height: f64) {
    let work = tempfile::tempdir().unwrap();
    let html = work.path().join(format!("{name}.html"));
    let out = run_in(
        dir,
        &["audit", incident, "-q", "--html", html.to_str().unwrap()],
    );
    assert!(code(&out) <= 3, "{name}: {}", stderr(&out));
    for width in [1200, 420] {
        let layout = measure(&html, width, work.path());
        assert_eq!(
            layout["width"], width,
            "{name}: the page is {width} px wide"
        );
        assert!(
            layout["scrollWidth"].as_f64().unwrap() <= width as f64,
            "{name} at {width} px scrolls sideways: {layout}"
        );
        assert_eq!(
            layout["overflowing"],
            serde_json::json!([]),
            "{name} at {width} px: {layout}"
        );
        assert!(
            layout["svgs"].as_u64().unwrap() >= 2,
            "{name} at {width} px has charts: {layout}"
        );
        let min_font = layout["minFont"].as_f64().unwrap();
        assert!(
            min_font >= 10.0,
            "{name} at {width} px: chart text of {min_font:.1} px: {layout}"
        );
        if width == 420 {
            let height = layout["height"].as_f64().unwrap();
            assert!(
                height <= max_phone_height,
                "{name} at 420 px is {height} px long"
            );
        }
        let png = screenshot(&html, name, width, work.path());
        assert!(
            std::fs::metadata(&png).unwrap().len() > 20_000,
            "{name}: a screenshot was taken"
        );
    }
}

#[test]
fn rollback_and_canary_reports_fit_a_laptop_and_a_phone() {
    // The demo shows every rollback check (14), six charts, the eight intervals of "How sure"
    // (about 1,300 px) and the next steps: about 19,500 px on a phone; the bound catches a
    // section that starts repeating itself.
    check_layout("rollback", &fixture("demo"), "incident.toml", 21_000.0);
    check_layout("canary", &fixture("canary-fail"), "incident.toml", 14_000.0);
}

/// Requests over `regions` regions around a flip, with a few wrong pins in the last region.
fn regions_incident(dir: &Path, regions: usize) {
    let mut csv = String::from(
        "ts,request_id,region,user_id,prompt_ver,cache_ns,cache_hit,status,latency_ms\n",
    );
    let mut n = 0;
    for minute in 0..120 {
        for r in 0..regions {
            for k in 0..2 {
                n += 1;
                let wrong = minute >= 75 && r == regions - 1 && k == 0 && minute % 5 == 0;
                csv.push_str(&format!(
                    "2026-11-27T{:02}:{:02}:{:02}Z,r-{n},region-{r:02},u-{},{},ns:p-6,{},{},{}\n",
                    9 + minute / 60,
                    minute % 60,
                    k * 20 + r % 20,
                    n % 97,
                    if wrong || (45..60).contains(&minute) {
                        "p-7"
                    } else {
                        "p-6"
                    },
                    k == 1,
                    if (45..60).contains(&minute) && k == 0 {
                        503
                    } else {
                        200
                    },
                    150 + (n * 37 % 200)
                ));
            }
        }
    }
    std::fs::write(dir.join("requests.csv"), csv).unwrap();
    std::fs::write(
        dir.join("incident.toml"),
        r#"id = "INC-R"
title = "many regions"
flip_at = "2026-11-27T10:00:00Z"
root_cause_url = "https://tracker.example/R"
[inputs]
requests = "requests.csv"
[windows]
baseline = ["2026-11-27T09:00:00Z", "2026-11-27T09:40:00Z"]
[expected_pins]
prompt_ver = "p-6"
[cache]
namespace = "ns:{prompt_ver}"
"#,
    )
    .unwrap();
}

#[test]
fn one_region_and_thirty_regions_fit_a_phone() {
    for (regions, max_height) in [(1, 14_000.0), (30, 40_000.0)] {
        let tmp = tempfile::tempdir().unwrap();
        regions_incident(tmp.path(), regions);
        check_layout(
            &format!("regions-{regions}"),
            tmp.path(),
            "incident.toml",
            max_height,
        );
    }
}
