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
  poll();
  pollEvents();
  live();
  setInterval(pollEvents, 5000);
});
