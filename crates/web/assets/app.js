// pace2pylon's page: polls /api/v1/status every 2 s and redraws. Data only ever reaches the DOM
// as text (textContent), never as markup.
"use strict";

const TOKEN_KEY = "pace2pylon-token";
// Orders that change what the batteries do are confirmed first.
const CONFIRM = {
  force_disable: "Force charging and discharging off? The inverter will run on the grid.",
  rebalance_start: "Start a rebalance? The stack will be charged to the rebalance voltage.",
  rebalance_cancel: "Cancel the rebalance? The SOC stays uncalibrated until the next full one.",
};
const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "title") e.title = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const fmt = {
  v: (mv) => (mv === null || mv === undefined ? "—" : (mv / 1000).toFixed(2) + " V"),
  cellV: (mv) => (mv / 1000).toFixed(3),
  a: (ma) => (ma === null || ma === undefined ? "—" : (ma / 1000).toFixed(1) + " A"),
  w: (w) => (w === null || w === undefined ? "—" : Math.round(w) + " W"),
  pct: (p) => (p === null || p === undefined ? "—" : p + " %"),
  ah: (mah) => (mah === null || mah === undefined ? "—" : (mah / 1000).toFixed(1) + " Ah"),
  c: (dc) => (dc / 10).toFixed(1) + " °C",
  age: (ms) => (ms === null || ms === undefined ? "no data" : ms < 10000 ? (ms / 1000).toFixed(1) + " s ago" : Math.round(ms / 1000) + " s ago"),
};

function figure(label, value) {
  return el("div", { class: "figure" }, el("b", {}, value), el("span", {}, label));
}

function setAge(node, ms, stale) {
  node.textContent = fmt.age(ms);
  node.className = "age" + (stale ? " stale" : "");
}

function definitions(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "—")]));
}

function renderSummary(s) {
  for (const [id, on, word] of [["charge", s.charge_enabled, "charge"], ["discharge", s.discharge_enabled, "discharge"]]) {
    const e = $(id);
    e.textContent = word + (on ? " enabled" : " disabled");
    e.className = "enable " + (on ? "on" : "off");
  }
  const st = s.stack;
  $("figures").replaceChildren(
    figure("power", st ? fmt.w(st.power_w) : "—"),
    figure("current", st ? fmt.a(st.current_ma) : "—"),
    figure("voltage", st ? fmt.v(st.voltage_mv) : "—"),
    figure("state of charge", st ? fmt.pct(st.soc_pct) : "—"),
    figure("cells min / max", st ? fmt.cellV(st.cell_min_mv) + " / " + fmt.cellV(st.cell_max_mv) + " V" : "—"),
    figure("charge limit", st ? fmt.v(st.charge_voltage_mv) + " · " + fmt.a(st.charge_current_ma) : "—"),
    figure("discharge limit", st ? fmt.v(st.discharge_voltage_mv) + " · " + fmt.a(st.discharge_current_ma) : "—"),
  );
}

function renderSafety(s) {
  const list = $("reasons");
  if (s.reasons.length === 0) {
    list.replaceChildren(el("li", { class: "clear" }, "✓ no rule blocks charging or discharging"));
  } else {
    list.replaceChildren(...s.reasons.map((r) =>
      el("li", { class: "reason" + (r.blocks === "nothing" ? " alarm" : ""), title: "rule " + r.rule + " · " + r.code },
        r.text + (r.blocks === "nothing" ? " — alarm" : " — blocks " + r.blocks))));
  }
  $("decision-age").textContent = s.decision_age_ms === null ? "no decision yet" : "decided " + fmt.age(s.decision_age_ms);
}

// SAFETY.md §2a, per direction: base (n packs × the weakest alarm × derating), each taper factor
// with its reason, the guard's cut, and what the inverter is told.
function renderLimits(s) {
  const l = s.limits;
  if (!l) return;
  const row = (label, c, d) => el("tr", {}, el("th", {}, label), el("td", {}, c), el("td", {}, d));
  const factors = (x) => x.factors.length === 0 ? "—" : x.factors.map((f) => f.reason + " → × " + f.factor.toFixed(2)).join("; ");
  // Below its target without a guard cut, the limit is rising at limit_rise_per_s.
  const told = (x) => fmt.a(x.limit_ma) + (!x.guard && x.target_ma !== null && x.limit_ma !== null && x.limit_ma < x.target_ma ? " (rising to " + fmt.a(x.target_ma) + ")" : "");
  const guard = (x) => x.guard ? "pack " + x.guard.pack + " at " + fmt.a(x.guard.current_ma) + " of " + x.guard.alarm_a + " A → " + fmt.a(x.guard.cut_ma) : "—";
  $("limits").replaceChildren(
    el("tr", {}, el("th", {}, ""), el("th", {}, "charge"), el("th", {}, "discharge")),
    row("packs counted", String(l.charge.packs), String(l.discharge.packs)),
    row("base", fmt.a(l.charge.base_ma) + (l.charge.a_min_a !== null ? " (" + l.charge.packs + " × " + l.charge.a_min_a + " A)" : ""),
      fmt.a(l.discharge.base_ma) + (l.discharge.a_min_a !== null ? " (" + l.discharge.packs + " × " + l.discharge.a_min_a + " A)" : "")),
    row("taper", factors(l.charge), factors(l.discharge)),
    row("recovery", l.charge.recovery_ma !== null ? fmt.a(l.charge.recovery_ma) : "—", "—"),
    row("top hold", l.charge.hold_ma != null ? fmt.a(l.charge.hold_ma) : "—", "—"),
    row("guard", guard(l.charge), guard(l.discharge)),
    el("tr", { class: "final" }, el("th", {}, "limit"), el("td", {}, told(l.charge)), el("td", {}, told(l.discharge))),
  );
}

function renderRebalance(s) {
  const r = s.rebalance;
  $("rb-step").textContent = r.step + (r.needed ? " · needed" : "");
  $("rb-progress").textContent = r.progress + (r.soc_uncalibrated ? " — the SOC is uncalibrated (last rebalance cancelled)" : "");
  $("rb-dates").textContent = "last completed: " + (r.last_completed || "never") + (r.next_due ? " · next due: " + r.next_due : "")
    + (s.overrides.charge_voltage_suspended ? " · the charge voltage override (" + fmt.v(s.overrides.charge_voltage_mv) + ") is suspended until the rebalance ends" : "");
}

function renderCoil(s) {
  const c = s.coil;
  if (!c.configured) {
    definitions($("coil"), [["", "not configured"]]);
    $("coil-age").textContent = "";
    return;
  }
  setAge($("coil-age"), c.age_ms, c.stale);
  definitions($("coil"), [
    ["SOC", fmt.pct(c.soc_pct)],
    ["voltage", fmt.v(c.voltage_mv)],
    ["current", fmt.a(c.current_ma)],
    ["remaining", fmt.ah(c.remaining_mah)],
    ["state", c.state],
    ["capacity / full V", c.capacity_mah === null ? "—" : fmt.ah(c.capacity_mah) + " / " + fmt.v(c.full_voltage_mv)],
    ["line", c.last_error || "ok"],
  ]);
}

// What the inverter reports on its Modbus port, and how it is told: RS485 replies, CAN frames.
function renderInverter(s) {
  const i = s.inverter;
  const rows = [];
  if (i.configured) {
    setAge($("inverter-age"), i.age_ms, i.stale);
    rows.push(
      ["mode", i.working_mode],
      ["PV", fmt.w(i.pv_power_w)],
      ["load", fmt.w(i.load_power_w)],
      ["grid", fmt.w(i.grid_power_w)],
      ["battery", fmt.w(i.battery_power_w)],
      ["output priority", i.output_priority_name ?? i.output_priority],
      ["charging priority", (i.charging_priority_name ?? i.charging_priority) + (s.overrides.charging_priority !== null ? " (forced)" : "")],
      ["line", i.last_error || "ok"],
    );
  } else {
    $("inverter-age").textContent = "";
    rows.push(["Modbus", "not configured"]);
  }
  if (s.pylon) {
    rows.push(["RS485 (" + s.pylon.profile + ")", s.pylon.replies + " replies, " + s.pylon.unanswered + " unanswered"]);
  }
  if (s.can) {
    const c = s.can;
    const beat = c.heartbeat_age_s === null ? "no heartbeat yet" : "heartbeat " + c.heartbeat_age_s.toFixed(1) + " s ago";
    rows.push(["CAN (" + c.profile + ")", c.frames_sent + " frames sent, " + beat + (c.peer_alarm ? " — inverter silent" : "")]);
    if (c.error) rows.push(["CAN bus", c.error]);
  }
  definitions($("inverter"), rows);
}

function packCard(p) {
  const head = el("h2", {}, "Pack " + p.number, el("span", { class: "age" + (p.stale ? " stale" : "") }, fmt.age(p.age_ms)));
  const card = el("div", { class: "pack" + (p.stale ? " is-stale" : "") }, head);
  card.append(el("div", { class: "line" },
    el("span", {}, fmt.v(p.voltage_mv)), el("span", {}, fmt.a(p.current_ma)), el("span", {}, fmt.pct(p.soc_pct)),
    el("span", {}, fmt.ah(p.remaining_mah) + " / " + fmt.ah(p.full_mah)), el("span", {}, (p.cycles ?? "—") + " cycles"),
    el("span", { class: "muted" }, "Δ " + (p.cell_delta_mv ?? "—") + " mV")));
  // Its current against its own alarm, and its share of the limits (0x92).
  const alarm = p.current_ma !== null && p.current_ma < 0 ? p.discharge_alarm_a : p.charge_alarm_a;
  const load = p.current_ma === null || !alarm ? null : Math.abs(p.current_ma) / 1000 / alarm;
  card.append(el("div", { class: "line share" + (load !== null && load > 0.9 ? " hot" : "") },
    el("span", {}, "current " + fmt.a(p.current_ma === null ? null : Math.abs(p.current_ma)) + " of " + (alarm ?? "—") + " A alarm" + (load === null ? "" : " (" + Math.round(load * 100) + " %)")),
    el("span", { class: "muted" }, "share: charge " + (p.can_charge ? fmt.a(p.share_charge_ma) : "none") + " · discharge " + (p.can_discharge ? fmt.a(p.share_discharge_ma) : "none"))));
  if (p.cells_mv.length > 0) {
    const lo = 2500, hi = 3650;
    const cells = el("div", { class: "cells" });
    p.cells_mv.forEach((mv, k) => {
      const n = k + 1;
      let cls = "cell";
      if (n === p.cell_min) cls += " min";
      if (n === p.cell_max) cls += " max";
      if (p.balancing.includes(n)) cls += " bal";
      const bar = el("div", { class: "bar" });
      bar.style.height = Math.max(2, Math.min(100, ((mv - lo) / (hi - lo)) * 100)) + "%";
      cells.append(el("div", { class: cls, title: "cell " + n + ": " + mv + " mV" }, el("div", { class: "v" }, fmt.cellV(mv)), bar, el("div", { class: "n" }, n)));
    });
    card.append(cells, el("div", { class: "legend" },
      el("span", {}, el("i", { class: "lg-min" }), "lowest"), el("span", {}, el("i", { class: "lg-max" }), "highest"),
      el("span", {}, el("i", { class: "lg-bal" }), "balancing")));
  }
  if (p.temps_dc.length > 0) {
    const n = p.temps_dc.length;
    card.append(el("div", { class: "temps" }, ...p.temps_dc.map((t, k) => {
      const name = n >= 3 && k === n - 2 ? "MOSFET" : n >= 3 && k === n - 1 ? "env" : "T" + (k + 1);
      return el("span", {}, name + " " + fmt.c(t));
    })));
  }
  const flags = el("div", { class: "flags" });
  for (const [kind, names] of [["protection", p.flags.protections], ["fault", p.flags.faults], ["warning", p.flags.warnings], ["state", p.flags.system]]) {
    for (const name of names) flags.append(el("span", { class: "flag " + kind }, name));
  }
  if (flags.childElementCount > 0) card.append(flags);
  if (p.last_error) card.append(el("div", { class: "error" }, p.last_error));
  return card;
}

function render(s) {
  renderSummary(s);
  renderSafety(s);
  renderLimits(s);
  renderRebalance(s);
  renderCoil(s);
  renderInverter(s);
  $("packs").replaceChildren(...s.packs.map(packCard));
  $("clock").textContent = s.time;
}

function connected(how) {
  $("conn").textContent = "live";
  $("conn").title = how;
  $("conn").className = "pill ok";
}

async function poll() {
  try {
    const r = await fetch("/api/v1/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    connected("polling /api/v1/status every 2 s");
  } catch (e) {
    $("conn").textContent = "no connection to the daemon";
    $("conn").className = "pill bad";
  }
}

// Live updates from the event stream; polling every 2 s while the stream is down (a browser
// without EventSource, a proxy that buffers, a daemon that has every stream slot taken).
let polling = null;
function pollWhileStreamIsDown(down) {
  if (down && polling === null) {
    poll();
    polling = setInterval(poll, 2000);
  } else if (!down && polling !== null) {
    clearInterval(polling);
    polling = null;
  }
}

function live() {
  // `?poll` in the address: poll only (for proxies that buffer streams). Headless Chromium too,
  // unless `?stream` asks for the stream: screenshot tools (--virtual-time-budget) wait for every
  // open request to end, and a stream never ends.
  const params = new URLSearchParams(location.search);
  const headless = /HeadlessChrome/.test(navigator.userAgent) && !params.has("stream");
  if (!window.EventSource || params.has("poll") || headless) {
    pollWhileStreamIsDown(true);
    return;
  }
  const stream = new EventSource("/api/v1/stream");
  stream.addEventListener("status", (m) => {
    pollWhileStreamIsDown(false);
    render(JSON.parse(m.data));
    connected("server-sent events from /api/v1/stream");
  });
  stream.onerror = () => {
    pollWhileStreamIsDown(true);
    // A refused stream (503) is not retried by the browser: try again in a while.
    if (stream.readyState === EventSource.CLOSED) setTimeout(live, 30000);
  };
}

async function pollEvents() {
  try {
    const r = await fetch("/api/v1/events?limit=30", { cache: "no-store" });
    if (!r.ok) return;
    const j = await r.json();
    $("events").replaceChildren(...j.events.slice().reverse().map((e) =>
      el("li", {}, el("time", {}, e.time.replace("T", " ").replace("Z", "")), e.event + (e.reasons && e.reasons.length ? ": " + e.reasons.join("; ") : ""))));
  } catch (e) { /* the status poll reports the connection */ }
}

// History charts from /api/v1/history: inline SVG drawn here (no library). One minute a sample;
// a line breaks where a minute is missing or a value unknown. Bands shade the minutes when charging
// (upper half) or discharging (lower half) was disabled; their <title> names the reasons.
const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const per1000 = (v) => (v === null || v === undefined ? null : v / 1000);
const hhmm = (t) => { const d = new Date(t); return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0"); };
const dayTime = (t) => new Date(t).toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" }) + " " + hhmm(t);
// What each chart draws: [label, colour, value of a sample]; `packs` makes one series per pack.
const CHARTS = [
  { title: "State of charge (%)", fixed: [0, 100], digits: 0, unit: " %", series: [["SOC", "var(--accent)", (s) => s.soc_pct]] },
  { title: "Stack power (W), + charging", zero: true, digits: 0, unit: " W", series: [["power", "var(--accent)", (s) => s.power_w]],
    extra: (s) => [["current", fmt.a(s.current_ma)], ["voltage", fmt.v(s.voltage_mv)]] },
  { title: "Cells, lowest and highest (V)", span: 0.02, empty: [3.2, 3.4], digits: 3, unit: " V",
    series: [["highest", "#d9534f", (s) => per1000(s.cell_max_mv)], ["lowest", "#e0a400", (s) => per1000(s.cell_min_mv)]] },
  { title: "Current per pack (A), + charging", zero: true, digits: 1, unit: " A", packs: true },
  { title: "Current limits told to the inverter (A)", zero: true, digits: 1, unit: " A",
    series: [["charge", "var(--ok)", (s) => per1000(s.charge_limit_ma)], ["discharge", "var(--accent)", (s) => per1000(s.discharge_limit_ma)]] },
];

// 3 to 5 round ticks covering lo..hi.
function ticks(lo, hi) {
  const mag = Math.pow(10, Math.floor(Math.log10(hi - lo)) - 1);
  const step = [1, 2, 2.5, 5, 10, 20, 25, 50, 100].map((k) => k * mag).find((k) => Math.ceil(hi / k - 1e-9) - Math.floor(lo / k + 1e-9) <= 4);
  const out = [];
  for (let v = Math.floor(lo / step + 1e-9) * step; v <= hi + step * 0.999; v += step) out.push(Math.round(v / step) * step);
  return out;
}

// Local hours, every 1, 2, 3, 6 or 12 hours: at most one label per 64 px.
function hourTicks(start, end, plotW) {
  const step = [1, 2, 3, 6, 12, 24].find((k) => (end - start) / 3600e3 / k <= plotW / 64);
  const d = new Date(start);
  d.setMinutes(0, 0, 0);
  const out = [];
  for (let t = d.getTime(); t <= end; t += 3600e3) if (t >= start && new Date(t).getHours() % step === 0) out.push(t);
  return out;
}

// Runs of minutes when `key` is false (no run across a gap), with every reason seen in them.
function bands(view, key, kind, words) {
  const out = [];
  let run = null;
  for (const s of view.samples) {
    const off = s[key] === false;
    if (run && (!off || s.t - run.last > view.gap)) { out.push(run); run = null; }
    if (!off) continue;
    if (!run) run = { kind, from: s.t, last: s.t, reasons: new Set() };
    run.last = s.t;
    for (const r of s.reasons || []) run.reasons.add(r);
  }
  if (run) out.push(run);
  return out.map((r) => ({ kind, from: r.from, to: r.last + view.interval,
    title: words + " " + hhmm(r.from) + "–" + hhmm(r.last + view.interval) + (r.reasons.size ? ": " + [...r.reasons].join("; ") : "") }));
}

function linePath(view, get, px, py) {
  let d = "", prev = null;
  for (const s of view.samples) {
    const v = get(s);
    if (v === null || v === undefined) { prev = null; continue; }
    d += (prev !== null && s.t - prev <= view.gap ? "L" : "M") + px(s.t).toFixed(1) + " " + py(v).toFixed(1);
    prev = s.t;
  }
  return d;
}

// The sample of the minute under time t, or null (a gap, or outside the samples).
function sampleAt(view, t) {
  const a = view.samples;
  let lo = 0, hi = a.length - 1;
  while (lo < hi) { const m = (lo + hi) >> 1; if (a[m].t + view.interval <= t) lo = m + 1; else hi = m; }
  return a.length && t >= a[lo].t && t < a[lo].t + view.interval ? a[lo] : null;
}

function chart(def, view, box) {
  const series = def.packs
    ? Array.from({ length: view.packs }, (_, i) => ["Pack " + (i + 1), "hsl(" + ((210 + i * 137.5) % 360) + " 65% 42%)", (s) => per1000(s.packs?.[i]?.current_ma)])
    : def.series;
  const W = Math.max(300, Math.round(box.clientWidth)), H = 170, L = 46, R = 8, T = 8, B = 22;
  let lo = Infinity, hi = -Infinity;
  for (const s of view.samples) for (const [, , get] of series) {
    const v = get(s);
    if (v !== null && v !== undefined) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (def.fixed) [lo, hi] = def.fixed;
  if (!(lo <= hi)) [lo, hi] = def.empty || [0, 1]; // nothing known yet
  if (def.zero) [lo, hi] = [Math.min(lo, 0), Math.max(hi, 0)];
  const span = def.span || 1;
  if (hi - lo < span) [lo, hi] = [(lo + hi - span) / 2, (lo + hi + span) / 2];
  const ys = ticks(lo, hi);
  [lo, hi] = [ys[0], ys[ys.length - 1]];
  const px = (t) => L + ((t - view.start) / (view.end - view.start)) * (W - L - R);
  const py = (v) => T + ((hi - v) / (hi - lo)) * (H - T - B);
  const half = (H - T - B) / 2;
  const big = Math.max(Math.abs(lo), Math.abs(hi)) >= 1e4; // 12000 W is labelled 12k
  const label = (v) => (def.digits === 3 ? v.toFixed(3) : big && v !== 0 ? +(v / 1000).toFixed(3) + "k" : String(+v.toFixed(6)));
  const g = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": def.title });
  for (const b of view.bands) {
    g.append(svg("rect", { class: "band " + b.kind, x: px(b.from), width: Math.max(1, px(b.to) - px(b.from)), y: b.kind === "no-charge" ? T : T + half, height: half },
      svg("title", {}, b.title)));
  }
  for (const v of ys) {
    g.append(svg("line", { class: v === 0 ? "zero" : "grid", x1: L, x2: W - R, y1: py(v), y2: py(v) }),
      svg("text", { x: L - 4, y: py(v) + 4, "text-anchor": "end" }, label(v)));
  }
  for (const t of hourTicks(view.start, view.end, W - L - R)) {
    g.append(svg("line", { class: "grid", x1: px(t), x2: px(t), y1: T, y2: H - B }));
    if (px(t) < W - 16) g.append(svg("text", { x: px(t), y: H - 6, "text-anchor": "middle" }, hhmm(t)));
  }
  for (const [, colour, get] of series) {
    const p = svg("path", { class: "line", d: linePath(view, get, px, py) });
    p.style.stroke = colour;
    g.append(p);
  }
  const cursor = svg("line", { class: "cursor", x1: -9, x2: -9, y1: T, y2: H - B });
  g.append(cursor);

  const swatch = (colour) => { const i = el("i", { class: "ln" }); i.style.background = colour; return i; };
  const tip = el("div", { class: "tip" });
  tip.hidden = true;
  const wrap = el("div", { class: "chart" }, el("h3", {}, def.title),
    el("div", { class: "legend" }, ...series.map(([label, colour]) => el("span", {}, swatch(colour), label))), g, tip);
  g.addEventListener("mousemove", (ev) => {
    const r = g.getBoundingClientRect();
    const x = ((ev.clientX - r.left) * W) / r.width;
    if (x < L || x > W - R) { tip.hidden = true; cursor.setAttribute("x1", -9); cursor.setAttribute("x2", -9); return; }
    const t = view.start + ((x - L) / (W - L - R)) * (view.end - view.start);
    const s = sampleAt(view, t);
    const rows = [el("b", {}, dayTime(s ? s.t : t))];
    if (!s) rows.push(el("div", { class: "muted" }, "no data"));
    else {
      for (const [label, colour, get] of series) {
        const v = get(s);
        rows.push(el("div", {}, swatch(colour), label + ": " + (v === null || v === undefined ? "—" : v.toFixed(def.digits) + def.unit)));
      }
      for (const [label, text] of def.extra ? def.extra(s) : []) rows.push(el("div", {}, label + ": " + text));
      if (s.charge_enabled === false) rows.push(el("div", { class: "off" }, "charging disabled"));
      if (s.discharge_enabled === false) rows.push(el("div", { class: "off" }, "discharging disabled"));
      for (const reason of s.reasons || []) rows.push(el("div", { class: "reason" }, reason));
    }
    tip.replaceChildren(...rows);
    tip.hidden = false;
    const cx = px(s ? s.t : t);
    cursor.setAttribute("x1", cx);
    cursor.setAttribute("x2", cx);
    const w = wrap.getBoundingClientRect(), mx = ev.clientX - w.left;
    tip.style.left = (mx > w.width / 2 ? Math.max(0, mx - 14 - tip.offsetWidth) : mx + 14) + "px";
    tip.style.top = r.top - w.top + T + "px";
  });
  g.addEventListener("mouseleave", () => { tip.hidden = true; cursor.setAttribute("x1", -9); cursor.setAttribute("x2", -9); });
  return wrap;
}

let historyHours = 24, historyData = null, historySeq = 0, historyWidth = 0;

function drawHistory() {
  const h = historyData, box = $("charts");
  if (!h) return;
  const interval = (h.interval_s || 60) * 1000;
  const all = h.samples.map((s) => ({ ...s, t: Date.parse(s.time) })).filter((s) => Number.isFinite(s.t));
  // The window ends now, or at the last minute if the daemon's clock is ahead of this browser's.
  const end = Math.max(Date.now(), all.length ? all[all.length - 1].t + interval : 0);
  const start = end - (h.hours || historyHours) * 3600e3;
  const samples = all.filter((s) => s.t >= start);
  const view = { samples, interval, gap: 1.5 * interval, start, end, packs: Math.max(0, ...samples.map((s) => (s.packs ? s.packs.length : 0))) };
  view.bands = [...bands(view, "charge_enabled", "no-charge", "charging disabled"), ...bands(view, "discharge_enabled", "no-discharge", "discharging disabled")];
  historyWidth = box.clientWidth;
  const slots = CHARTS.map(() => el("div"));
  box.replaceChildren(...slots);
  CHARTS.forEach((def, k) => slots[k].replaceWith(chart(def, view, slots[k])));
  $("history-status").textContent = samples.length ? samples.length + " minutes · updated " + hhmm(Date.now()) : "no history recorded yet";
  $("history-status").className = "muted";
}

async function pollHistory() {
  const seq = ++historySeq;
  try {
    const r = await fetch("/api/v1/history?hours=" + historyHours, { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const j = await r.json();
    if (!Array.isArray(j.samples)) throw new Error("no samples in the answer");
    if (seq !== historySeq) return; // a newer request (another range) went out meanwhile
    historyData = j;
    drawHistory();
  } catch (e) {
    if (seq !== historySeq) return;
    $("history-status").textContent = "history not available (" + e.message + "); retrying every minute";
    $("history-status").className = "bad";
  }
}

async function control(order) {
  let token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    token = prompt("Control token ([http] token in the configuration):");
    if (!token) return;
    localStorage.setItem(TOKEN_KEY, token);
  }
  const out = $("control-result");
  try {
    const r = await fetch("/api/v1/control", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token },
      body: JSON.stringify(order),
    });
    const j = await r.json();
    if (r.status === 401) localStorage.removeItem(TOKEN_KEY);
    out.textContent = r.ok ? "✓ " + j.message : "✗ " + j.error;
    out.className = r.ok ? "" : "error";
    poll();
  } catch (e) {
    out.textContent = "✗ " + e;
    out.className = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button[data-action]")) {
    b.addEventListener("click", () => {
      const action = b.dataset.action;
      if (action === "set_charge_voltage") {
        const mv = parseInt($("cv").value, 10);
        if (!Number.isFinite(mv)) { $("control-result").textContent = "enter the limit in mV"; return; }
        control({ action, charge_voltage_mv: mv });
      } else if (action === "clear_charge_voltage") {
        control({ action: "set_charge_voltage", charge_voltage_mv: null });
      } else if (action === "force_charging_priority") {
        control({ action, priority: $("prio").value });
      } else if (CONFIRM[action] && !confirm(CONFIRM[action])) {
        return;
      } else {
        control({ action });
      }
    });
  }
  $("forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    $("control-result").textContent = "token forgotten";
  });
  for (const b of document.querySelectorAll("#hours button")) {
    b.addEventListener("click", () => {
      historyHours = parseInt(b.dataset.hours, 10);
      for (const o of document.querySelectorAll("#hours button")) o.className = o === b ? "on" : "";
      pollHistory();
    });
  }
  let resized = null;
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(() => { if ($("charts").clientWidth !== historyWidth) drawHistory(); }, 200);
  });
  poll();
  pollEvents();
  live();
  pollHistory();
  setInterval(pollEvents, 5000);
  setInterval(pollHistory, 60000);
});
