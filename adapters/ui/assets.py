"""The UI's one script and one style sheet, served as files (see `pages`: no inline code).

The script does two things and the pages work without it: it polls for a session's new
events and appends the rows the server rendered (already escaped), and it enables the diff
button once two points are picked.
"""

SCRIPT = r"""
(function () {
  "use strict";
  var body = document.getElementById("events");
  if (body && body.dataset.live) {
    var status = document.getElementById("live-status");
    var count = document.getElementById("count");
    var streamCount = document.getElementById("stream-count");
    var every = parseInt(body.dataset.poll || "2000", 10);
    var poll = function () {
      var url = body.dataset.live + "&after=" + encodeURIComponent(body.dataset.last);
      fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store"})
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (d) {
          if (d.html) {
            body.insertAdjacentHTML("beforeend", d.html);
            if (count) { count.textContent = String(parseInt(count.textContent, 10) + d.count); }
          }
          body.dataset.last = String(d.last);
          if (streamCount) { streamCount.textContent = String(d.last); }
          if (status) { status.textContent = "live"; status.className = "live"; }
        })
        .catch(function () { if (status) { status.textContent = "live: offline"; status.className = "live off"; } })
        .then(function () { setTimeout(poll, every); });
    };
    setTimeout(poll, every);
  }
  var form = document.querySelector("form.diff");
  if (form) {
    var button = document.getElementById("diff-button");
    var update = function () {
      button.disabled = !(form.querySelector("input[name=a]:checked") && form.querySelector("input[name=b]:checked"));
    };
    form.addEventListener("change", update);
    update();
  }
})();
"""

STYLE = """
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --ok: #067647; --bad: #b42318; --accent: #3538cd; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); }
header { display: flex; gap: 1em; align-items: center; padding: .6em 1.2em; background: #101828; color: #fff; }
header a { color: #fff; text-decoration: none; margin-right: .8em; }
header .brand { font-weight: 700; }
header .store { color: #98a2b3; font-family: ui-monospace, monospace; font-size: 12px; margin-left: auto; }
main { padding: 1em 1.2em 3em; }
h1 { font-size: 20px; margin: .2em 0 .5em; } h2 { font-size: 16px; margin: 1.4em 0 .4em; }
code, .time, td.type { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
th, td { text-align: left; padding: .3em .5em; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
td.what { max-width: 46em; overflow-wrap: anywhere; }
td.time, td.type, td a.at { white-space: nowrap; }
td.pick { width: 1.5em; }
a { color: var(--accent); }
.who { display: inline-block; padding: 0 .45em; margin: 0 .2em .1em 0; border-radius: 9px; font-size: 12px;
       background: #eef4ff; text-decoration: none; }
.who.team { background: #f4f3ff; } .who.user { background: #ecfdf3; } .who.workflow { background: #fef6ee; }
.who.run { background: #f2f4f7; color: var(--muted); }
.badge { display: inline-block; padding: .1em .6em; border-radius: 10px; font-size: 12px; background: #f2f4f7; }
.badge.ok { background: #ecfdf3; color: var(--ok); } .badge.bad { background: #fef3f2; color: var(--bad); }
.badge.view { background: #fffaeb; color: #b54708; } header .badge { color: var(--fg); }
.live { color: var(--ok); font-size: 12px; } .live.off { color: var(--bad); }
.facts { color: var(--muted); }
form.search, form.filters { display: flex; gap: .8em; flex-wrap: wrap; align-items: center; margin: .6em 0; }
input, select, button { font: inherit; padding: .2em .4em; }
.pager { margin: .5em 0; color: var(--muted); } .pager a { margin: 0 .3em; }
.empty { color: var(--muted); font-style: italic; }
.error { color: var(--bad); font-weight: 600; }
pre { background: #f9fafb; border: 1px solid var(--line); padding: .6em; overflow: auto; max-height: 24em; }
section.memory { border-top: 1px solid var(--line); } .now { font-size: 15px; } .deleted { color: var(--muted); }
"""
