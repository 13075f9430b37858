"use strict";
// wsiseg's index.html: renders the embedded run data. No network, no library.
const data = JSON.parse(document.getElementById("data").textContent);
const slides = data.slides;
const columns = [
  { key: "thumb", label: "", text: true, sortable: false },
  { key: "name", label: "slide", text: true },
  { key: "status", label: "status", text: true },
  { key: "tumor_pct", label: "tumor %", digits: 2 },
  { key: "tissue_pct", label: "tumor % of tissue", digits: 1 },
  { key: "regions", label: "regions", digits: 0 },
  { key: "uncertain_pct", label: "uncertain %", digits: 2 },
  { key: "seconds", label: "time s", digits: 1 },
  { key: "device", label: "device", text: true },
  { key: "error", label: "error", text: true },
];
// Failures first, then by name: what needs attention leads.
const statusRank = { failed: 0, missing: 1, done: 2 };
let sortKey = null;
let sortDir = 1;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmt(v, digits) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "number") return digits === undefined ? String(v) : v.toFixed(digits);
  return String(v);
}

function compare(a, b) {
  if (sortKey === null) {
    const r = (statusRank[a.status] ?? 3) - (statusRank[b.status] ?? 3);
    return r !== 0 ? r : a.name.localeCompare(b.name);
  }
  const x = a[sortKey], y = b[sortKey];
  const missing = (v) => v === null || v === undefined;
  if (missing(x) && missing(y)) return a.name.localeCompare(b.name);
  if (missing(x)) return 1;
  if (missing(y)) return -1;
  const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
  return c !== 0 ? sortDir * c : a.name.localeCompare(b.name);
}

function renderHead() {
  const tr = el("tr");
  for (const c of columns) {
    const th = el("th", { "data-key": c.key, class: c.text ? "text" : null }, c.label);
    if (sortKey === c.key) th.classList.add(sortDir > 0 ? "sorted-asc" : "sorted-desc");
    if (c.sortable !== false) {
      th.addEventListener("click", () => {
        if (sortKey === c.key) sortDir = -sortDir;
        else { sortKey = c.key; sortDir = c.text ? 1 : -1; }
        render();
      });
    }
    tr.append(th);
  }
  const thead = document.querySelector("#slides thead");
  thead.replaceChildren(tr);
}

function renderBody() {
  const q = document.getElementById("filter").value.trim().toLowerCase();
  const shown = slides
    .filter((s) => !q || [s.name, s.status, s.error].some((v) => v && String(v).toLowerCase().includes(q)))
    .sort(compare);
  const rows = shown.map((s) => {
    const tr = el("tr", { "data-slide": s.name, "data-status": s.status });
    for (const c of columns) {
      let cell;
      if (c.key === "thumb") {
        cell = el("td", { class: "text" }, s.overlay ? el("a", { href: "#view-" + s.name }, el("img", { class: "thumb", src: s.overlay, alt: s.name })) : null);
      } else if (c.key === "name") {
        cell = el("td", { class: "text" }, s.overlay ? el("a", { href: "#view-" + s.name }, s.name) : s.name);
      } else if (c.key === "status") {
        cell = el("td", { class: "text" }, el("span", { class: "status " + s.status }, s.status));
      } else if (c.key === "error") {
        cell = el("td", { class: "error" }, s.error || "");
      } else {
        cell = el("td", { class: c.text ? "text" : null, "data-key": c.key }, fmt(s[c.key], c.digits));
      }
      tr.append(cell);
    }
    return tr;
  });
  document.querySelector("#slides tbody").replaceChildren(...rows);
}

function render() {
  renderHead();
  renderBody();
}

function renderFailures() {
  const box = document.getElementById("failures");
  const failed = slides.filter((s) => s.status === "failed");
  if (failed.length) {
    box.append(el("h2", null, failed.length + " slide(s) failed"));
    box.append(el("ul", null, ...failed.map((s) => el("li", { "data-slide": s.name }, el("b", null, s.name), ": ", el("span", { class: "error" }, s.error || "no error recorded")))));
  }
  // Slides of the input with no result yet (wsiseg summary --input).
  const missing = slides.filter((s) => s.status === "missing");
  if (missing.length) {
    box.append(el("h2", null, missing.length + " slide(s) have no result yet"));
    box.append(el("ul", null, ...missing.map((s) => el("li", { "data-slide": s.name }, el("b", null, s.name), ": ", s.slide || ""))));
  }
}

function rgb(c) { return "rgb(" + c.join(",") + ")"; }

function scaleBar(s) {
  // A round length near a fifth of the picture's width.
  if (!s.um_per_px || !s.overlay) return null;
  const img = document.querySelector('img[data-overlay="' + CSS.escape(s.name) + '"]');
  const widthUm = s.um_per_px * (img && img.naturalWidth ? img.naturalWidth : 1000);
  const target = widthUm / 5;
  const steps = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];
  const len = steps.reduce((best, v) => (Math.abs(v - target) < Math.abs(best - target) ? v : best), steps[0]);
  const pct = (100 * len) / widthUm;
  const label = len >= 1000 ? len / 1000 + " mm" : len + " µm";
  return el("div", { class: "scalebar", style: "width:" + pct.toFixed(3) + "%" }, el("span", null, label));
}

// A running `wsiseg view` on this folder writes .wsiseg-view.js beside the
// page (loaded by a script tag): each slide then links to its deep zoom.
function zoomLink(s) {
  const view = window.WSISEG_VIEW;
  if (view && view.url) {
    return el("p", { class: "zoom" }, el("a", { class: "zoom-link", href: view.url + "#slide=" + encodeURIComponent(s.name) }, "zoom to the cells in wsiseg view"));
  }
  return el("p", { class: "zoom" }, "To zoom to the cells: run ", el("code", null, "wsiseg view " + data.folder), " and open this page again (or the link it prints).");
}

function renderViews() {
  const box = document.getElementById("views");
  const withPictures = slides.filter((s) => s.overlay || s.heatmap);
  if (!withPictures.length) return;
  box.append(el("h2", null, "Slides one by one"));
  for (const s of withPictures) {
    const v = el("div", { class: "view", id: "view-" + s.name });
    v.append(el("h3", null, s.name + " — tumor " + fmt(s.tumor_pct, 2) + "% (" + fmt(s.tissue_pct, 1) + "% of tissue), " + fmt(s.regions, 0) + " regions"));
    v.append(zoomLink(s));
    if (s.overlay) {
      const fig = el("figure", null, el("img", { src: s.overlay, alt: "overlay of " + s.name, "data-overlay": s.name }));
      fig.append(el("figcaption", null,
        el("span", { class: "legend" }, el("span", { class: "swatch", style: "background:" + rgb(s.tumor_colour) }), "tumor (outlined)"),
        el("span", { class: "legend" }, "tissue and glass as scanned")));
      v.append(fig);
      const img = fig.querySelector("img");
      const addBar = () => { const bar = scaleBar(s); if (bar) fig.append(bar); };
      if (img.complete) addBar(); else img.addEventListener("load", addBar);
    }
    if (s.heatmap) {
      v.append(el("figure", null, el("img", { src: s.heatmap, alt: "heat map of " + s.name }),
        el("figcaption", null, el("span", { class: "legend" }, "P(tumor) 0 ", el("span", { class: "colourbar" }), " 1 (clear below 0.1)"))));
    }
    const numbers = el("table", { class: "numbers" });
    for (const [k, val] of Object.entries(s.numbers || {})) {
      numbers.append(el("tr", null, el("td", null, k), el("td", null, typeof val === "object" && val !== null ? JSON.stringify(val) : fmt(val))));
    }
    v.append(el("details", null, el("summary", null, "report numbers (" + s.report + ")"), numbers));
    box.append(v);
  }
}

function renderEval() {
  const e = data.eval;
  if (!e || !e.slides) return;
  const box = document.getElementById("eval");
  box.append(el("h2", null, "Evaluation against ground truth (worst first)"));
  const t = el("table", { id: "eval-table" });
  t.append(el("tr", null, ...["slide", "Dice", "IoU", "precision", "recall", "lesions found", "false regions", "boundary F", "ECE"].map((h) => el("th", { class: h === "slide" ? "text" : null }, h))));
  for (const s of e.slides) {
    const c = s.classes.tumor || Object.values(s.classes)[0] || {};
    const l = s.lesions || {};
    const cells = [fmt(c.dice, 4), fmt(c.iou, 4), fmt(c.precision, 4), fmt(c.recall, 4),
      fmt(l.found) + "/" + fmt(l.truth_regions), fmt(l.false),
      fmt(s.boundary && s.boundary.f_score, 4), fmt(s.calibration && s.calibration.ece, 4)];
    t.append(el("tr", { "data-slide": s.slide }, el("td", { class: "text" }, s.slide), ...cells.map((v) => el("td", null, v))));
  }
  box.append(t);
}

document.getElementById("folder").textContent = data.folder;
const counts = {};
for (const s of slides) counts[s.status] = (counts[s.status] || 0) + 1;
document.getElementById("counts").textContent = slides.length + " slide(s): " +
  Object.entries(counts).map(([k, n]) => n + " " + k).join(", ") + " · wsiseg " + data.wsiseg_version + " · " + data.generated_utc;
document.getElementById("filter").addEventListener("input", renderBody);
renderFailures();
render();
renderEval();
renderViews();
// "#click=KEY" (repeatable: "#click=KEY,KEY") clicks those column headers,
// as a person would: a link can open the table sorted.
const m = location.hash.match(/^#click=([\w,]+)$/);
if (m) for (const key of m[1].split(",")) {
  const th = document.querySelector('#slides th[data-key="' + key + '"]');
  if (th) th.click();
}
