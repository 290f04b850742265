// The operators' console of upi-switch: polls the switch's operator API
// (/v1/ops/*, /v1/settlement/*, /v1/reconciliation/*) every 2 s and draws it;
// controls call the same API after a confirmation. The operator token lives
// in this tab's sessionStorage and goes out as a bearer header: no cookies,
// so no CSRF. Every value from the switch is written with textContent.
"use strict";

const TOKEN_KEY = "upi-switch.operator-token";
const POLL_MS = 2000;
let authOn = true;
let timer = null;
let searching = null; // the active search's query string, or null: recent

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else if (k === "onclick") e.addEventListener("click", v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

const badge = (text) => el("span", { class: "badge " + text }, text);

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const err = new Error((data && data.detail) || resp.statusText);
    err.status = resp.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

function showResult(text, ok) {
  const r = $("#result");
  r.textContent = text;
  r.className = "result" + (ok ? "" : " fail");
}

// ---- sign in ----------------------------------------------------------

async function start() {
  try {
    const ready = await fetch("/readyz").then((r) => r.json());
    authOn = ready.auth !== "off";
  } catch (_) {
    authOn = true;
  }
  if (!authOn || sessionStorage.getItem(TOKEN_KEY)) {
    enter();
  } else {
    $("#signin").hidden = false;
  }
}

$("#signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  try {
    await api("GET", "/v1/ops/banks");
    $("#token").value = "";
    enter();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#token").value = "";
    $("#signin-error").textContent =
      e.status === 401 ? "That token is not the operator token." : "The switch did not answer: " + e.message;
  }
});

$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  location.reload();
});

function enter() {
  $("#signin").hidden = true;
  $("#console").hidden = false;
  $("#signout").hidden = !authOn;
  refresh();
  timer = setInterval(refresh, POLL_MS);
}

// ---- polling ----------------------------------------------------------

let history = { banks: [] };
let historyAt = 0;
let processorsAt = 0;

async function refresh() {
  const now = Date.now();
  const jobs = [
    api("GET", "/readyz").catch((e) => e).then(drawNode),
    api("GET", "/v1/ops/banks").then(drawBanks),
    api("GET", "/v1/ops/sagas?oldest=5").then(drawSagas),
    api("GET", "/v1/ops/outbox").then(drawOutbox),
    api("GET", "/v1/settlement/windows").then(drawSettlement),
    api("GET", "/v1/ops/audit?limit=15").then(drawAudit),
    api("GET", "/v1/ops/transactions?" + (searching || "limit=20")).then(drawTransactions),
  ];
  // The slower reads: the history changes every 5 s; the processors' totals
  // count every merchant payment (a whole-table sum), so every 10 s.
  if (now - historyAt > 5000) {
    historyAt = now;
    jobs.push(api("GET", "/v1/ops/banks/history").then((h) => (history = h)));
  }
  if (now - processorsAt > 10000) {
    processorsAt = now;
    jobs.push(api("GET", "/v1/ops/processors").then(drawProcessors));
  }
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed && failed.reason && failed.reason.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  }
}

function drawNode(ready) {
  if (!ready || !ready.node) return;
  $("#node").textContent = `node ${ready.node.name} · ${ready.status} · auth ${ready.auth} · postgres ${ready.checks.postgres} · rabbitmq ${ready.checks.rabbitmq} · redis ${ready.checks.redis}`;
}

// A strip of the last 10 minutes: one block per 5 s sample, the worst state in it.
function strip(samples, pick) {
  const w = 3, h = 12, n = 120;
  const s = svg("svg", { class: "strip", width: n * w, height: h, role: "img" });
  const recent = samples.slice(-n);
  const pad = n - recent.length;
  for (let i = 0; i < n; i++) {
    const sample = i < pad ? null : recent[i - pad];
    const state = sample ? pick(sample) : "none";
    s.append(svg("rect", { x: i * w, y: 0, width: w - 1, height: h, class: state || "none" }));
  }
  return s;
}

function drawBanks(data) {
  const box = $("#banks");
  box.replaceChildren();
  for (const bank of data.banks) {
    const hist = (history.banks || []).find((b) => b.code === bank.code);
    const rows = bank.endpoints.map((e, i) =>
      el("tr", {},
        el("td", {}, e.url),
        el("td", {}, badge(e.circuit)),
        el("td", {}, e.mode),
        el("td", { class: "num" }, (e.success_rate * 100).toFixed(1) + "%"),
        el("td", { class: "num" }, e.latency_ms_p50.toFixed(1)),
        el("td", { class: "num" }, e.latency_ms_p99.toFixed(1)),
        el("td", { class: "num" }, `${e.in_flight}/${e.bulkhead}`),
        el("td", {}, hist ? strip(hist.samples, (s) => s.circuits[hist.endpoints.indexOf(e.url)] || "none") : ""),
      ));
    const control = (label, action, cls) =>
      el("button", { class: "control " + (cls || ""), "data-bank": bank.code, "data-action": action, onclick: () => act(bank.code, action) }, label);
    box.append(
      el("div", { class: "bank", "data-code": bank.code, "data-health": bank.health },
        el("h3", {}, bank.code, badge(bank.health), el("span", { class: "muted" }, `adapter restarts ${bank.adapter_restarts}`)),
        el("table", {},
          el("thead", {}, el("tr", {}, ...["endpoint", "circuit", "mode", "success", "p50 ms", "p99 ms", "in flight", "last 10 min"].map((t) => el("th", {}, t)))),
          el("tbody", {}, ...rows)),
        el("div", { class: "controls" },
          control("Force open", "open", "danger"),
          control("Force closed", "closed"),
          control("Auto", "auto"),
          control("Restart adapters", "restart"))));
  }
}

function bars(items, label, value) {
  const max = Math.max(1, ...items.map((i) => Math.abs(value(i))));
  const rowH = 18, w = 360;
  const s = svg("svg", { width: w + 160, height: items.length * rowH + 4, role: "img" });
  items.forEach((it, i) => {
    const v = value(it);
    const len = Math.max(1, (Math.abs(v) / max) * (w - 60));
    s.append(svg("text", { x: 0, y: i * rowH + 13, "font-size": 12 }, document.createTextNode(label(it))));
    s.append(svg("rect", { x: 150, y: i * rowH + 3, width: len, height: 12, class: "bar" + (v < 0 ? " neg" : "") }));
    s.append(svg("text", { x: 155 + len, y: i * rowH + 13, "font-size": 12 }, document.createTextNode(String(v))));
  });
  return s;
}

function drawSagas(data) {
  const box = $("#sagas");
  box.replaceChildren(
    el("p", {}, `${data.counted}${data.counted >= data.counted_cap ? "+" : ""} unfinished`),
    data.by_step.length ? bars(data.by_step, (s) => s.step || "(new)", (s) => s.count) : el("p", { class: "muted" }, "none"),
    el("h3", {}, "Oldest"),
    txnTable(data.oldest, true));
}

function drawOutbox(o) {
  $("#outbox").replaceChildren(
    el("p", {}, `pending ${o.pending} · lag ${o.lag_seconds.toFixed(1)} s · published ${o.published} · `,
      badge(o.connected ? "UP" : "DOWN"), " relay ", o.leader ? "(leader here)" : "(standing by)",
      " · event feed ", badge(o.event_feed_connected ? "UP" : "DOWN")));
}

function drawProcessors(p) {
  if (!p.enabled) {
    $("#processors").replaceChildren(el("p", { class: "muted" }, "merchant forwarding is off in this switch"));
    return;
  }
  const total = p.processors.reduce((a, x) => a + x.accepted, 0) || 1;
  $("#processors").replaceChildren(el("table", {},
    el("thead", {}, el("tr", {}, ...["processor", "fee", "circuit", "latency ms", "in flight", "share", "accepted", "amount"].map((t) => el("th", {}, t)))),
    el("tbody", {}, ...p.processors.map((x) => el("tr", {},
      el("td", {}, x.processor),
      el("td", {}, x.processor === "default" ? "lower" : "higher"),
      el("td", {}, badge(x.failing ? "open" : x.circuit)),
      el("td", { class: "num" }, x.latency_ms),
      el("td", { class: "num" }, `${x.in_flight}/${x.capacity}`),
      el("td", { class: "num" }, ((x.accepted / total) * 100).toFixed(1) + "%"),
      el("td", { class: "num" }, x.accepted),
      el("td", { class: "num" }, x.accepted_amount))))));
}

let shownWindow = null;

async function drawSettlement(list) {
  const box = $("#settlement");
  const open = list.windows.find((w) => w.status === "OPEN");
  const closed = list.windows.find((w) => w.status === "CLOSED");
  const parts = [el("p", { "data-open-window": open ? open.window_id : "" },
    open ? `window ${open.window_id} open since ${open.opened_at}` : "no open window")];
  if (closed) {
    const [detail, recon] = await Promise.all([
      api("GET", "/v1/settlement/windows/" + closed.window_id),
      api("GET", "/v1/reconciliation/" + closed.window_id).catch(() => null),
    ]);
    shownWindow = closed.window_id;
    parts.push(el("p", {}, `last closed: window ${detail.window_id} · ${detail.txn_count} payment${detail.txn_count === 1 ? "" : "s"} · gross ${detail.gross} · closed ${detail.closed_at}`));
    if (detail.positions.length) {
      parts.push(bars(detail.positions, (p) => `${p.bank_code} (${p.txn_count})`, (p) => Number(p.net)));
    }
    if (recon) {
      parts.push(el("p", {}, "reconciliation ", badge(recon.status), ` matched ${recon.matched} · mismatches ${recon.mismatches.length} · ${recon.mismatch_ppm} ppm`));
      if (recon.mismatches.length) {
        parts.push(el("table", {}, el("tbody", {}, ...recon.mismatches.slice(0, 10).map((m) =>
          el("tr", {}, el("td", {}, badge("FAILED")), el("td", {}, m.kind), el("td", {}, m.bank_code), el("td", {}, m.op_id), el("td", {}, m.detail))))));
      }
    }
  }
  box.replaceChildren(...parts);
}

function drawAudit(a) {
  $("#audit tbody").replaceChildren(...a.entries.map((e) =>
    el("tr", {}, el("td", {}, e.at), el("td", {}, e.actor), el("td", {}, e.action), el("td", {}, e.target))));
}

function txnTable(rows, compact) {
  return el("table", {}, el("tbody", {}, ...rows.map((t) => txnRow(t, compact))));
}

function txnRow(t, compact) {
  const cells = [
    el("td", {}, t.created_at.replace("T", " ").slice(0, 23)),
    el("td", {}, t.txn_id),
    el("td", {}, t.type),
    el("td", {}, badge(t.status)),
    el("td", {}, t.step),
  ];
  if (!compact) {
    cells.push(el("td", {}, t.payer_vpa), el("td", {}, t.payee_vpa), el("td", { class: "num" }, t.amount), el("td", {}, t.reason_code || ""));
  }
  return el("tr", { "data-txn": t.txn_id }, ...cells);
}

function drawTransactions(list) {
  $("#transactions tbody").replaceChildren(...list.transactions.map((t) => txnRow(t, false)));
}

$("#search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams();
  for (const [id, name] of [["#search-id", "txn_id"], ["#search-vpa", "vpa"], ["#search-status", "status"]]) {
    const v = $(id).value.trim();
    if (v) q.set(name, v);
  }
  q.set("limit", "50");
  searching = q.toString();
  api("GET", "/v1/ops/transactions?" + searching).then(drawTransactions, (e) => showResult("Search: " + e.message, false));
});

$("#search-clear").addEventListener("click", () => {
  searching = null;
  for (const id of ["#search-id", "#search-vpa", "#search-status"]) $(id).value = "";
  refresh();
});

// ---- controls ---------------------------------------------------------

function confirmThen(text, run) {
  const d = $("#confirm");
  $("#confirm-text").textContent = text;
  d.returnValue = "";
  d.onclose = async () => {
    if (d.returnValue !== "yes") {
      showResult("Cancelled.", true);
      return;
    }
    try {
      showResult(await run(), true);
    } catch (e) {
      showResult(`Failed: ${e.message}${e.code ? " (" + e.code + ")" : ""}`, false);
    }
    refresh();
  };
  d.showModal();
}

function act(bank, action) {
  if (action === "restart") {
    confirmThen(`Restart every adapter of ${bank}? Calls in flight finish; new calls wait for the fresh adapters.`, async () => {
      const r = await api("POST", `/v1/admin/banks/${encodeURIComponent(bank)}/adapters/restart`);
      return `${bank}: ${r.restarted} adapters restarted.`;
    });
    return;
  }
  const what = { open: "force every circuit of %s OPEN (no calls reach it)", closed: "force every circuit of %s CLOSED", auto: "hand %s's circuits back to the breaker (auto)" }[action];
  confirmThen(`Really ${what.replace("%s", bank)}?`, async () => {
    const v = await api("PUT", `/v1/admin/banks/${encodeURIComponent(bank)}/circuit`, { mode: action });
    return `${bank}: circuits ${v.endpoints.map((e) => e.circuit).join(", ")} (mode ${action}); bank ${v.health}.`;
  });
}

$("#close-window").addEventListener("click", () => {
  confirmThen("Close the open settlement window now? Its positions are computed and a new window opens.", async () => {
    const r = await api("POST", "/v1/admin/settlement/close");
    return `Window ${r.closed} closed; window ${r.opened} is open.`;
  });
});

start();
