// allocate dashboard: draws the lab from the server's feed (docs/dashboard.md).
//
// GET /dashboard/feed answers one snapshot (and tells whether a token is needed); the
// websocket at the same path then sends a hello and a new snapshot whenever the lab changes.
// Everything shown comes from those snapshots; countdowns tick locally on the server's clock.
"use strict";

(() => {
  const FEED = "/dashboard/feed";
  const TOKEN_KEY = "allocate.token";
  const ROWS_MAX = 500; // per table; filters narrow the rest
  const POLL_MS = 3000; // when the token cannot ride a websocket subprotocol
  const RETRY_MS_MAX = 10000;
  const STATES = ["free", "allocated", "offline", "error", "maintenance", "reserved"];
  const $ = (id) => document.getElementById(id);

  const ui = {
    live: $("live"), who: $("who"), auth: $("auth"), main: $("main"),
    tokenForm: $("token-form"), token: $("token"), forget: $("forget"), authError: $("auth-error"),
    counts: $("counts"), labels: $("f-labels"), labelsList: $("labels-list"), state: $("f-state"),
    clear: $("f-clear"), note: $("f-note"), toast: $("toast"), updated: $("updated"),
  };

  let snapshot = null;     // the newest snapshot's data
  let caller = null;       // {role, name}
  let clockOffset = 0;     // server seconds minus local seconds
  let socket = null;
  let retryMs = 1000;
  let retryTimer = 0;
  let pollTimer = 0;
  let toastTimer = 0;
  let updates = 0;

  // ---- helpers ---------------------------------------------------------------------------

  const esc = (v) => String(v).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const serverNow = () => Date.now() / 1000 + clockOffset;
  const short = (id) => (id ? String(id).slice(0, 8) : "");
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const authHeaders = () => (token() ? { Authorization: "Bearer " + token() } : {});

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    const d = Math.floor(secs / 86400), h = Math.floor(secs % 86400 / 3600);
    const m = Math.floor(secs % 3600 / 60), s = secs % 60;
    const two = (n) => String(n).padStart(2, "0");
    if (d > 0) return `${d}d ${two(h)}h`;
    if (h > 0) return `${h}h ${two(m)}m`;
    if (m > 0) return `${m}m ${two(s)}s`;
    return `${s}s`;
  }

  function clock(unix) {
    const t = new Date(unix * 1000), now = new Date();
    const hm = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    if (t.toDateString() === now.toDateString()) return hm;
    return t.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" }) + " " + hm;
  }

  function toast(text, bad) {
    ui.toast.textContent = text;
    ui.toast.classList.toggle("bad", !!bad);
    ui.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { ui.toast.hidden = true; }, bad ? 8000 : 4000);
  }

  function setLive(state, text) {
    ui.live.dataset.state = state;
    ui.live.textContent = text;
  }

  // ---- filters (kept in the URL's hash, so a view can be shared) -------------------------

  function filterLabels() {
    return ui.labels.value.split(",").map((s) => s.trim()).filter(Boolean);
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    ui.labels.value = params.get("labels") || "";
    const state = params.get("state") || "";
    ui.state.value = STATES.includes(state) ? state : "";
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (ui.labels.value.trim()) params.set("labels", filterLabels().join(","));
    if (ui.state.value) params.set("state", ui.state.value);
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function onFilter() {
    writeHash();
    render();
  }

  function toggleLabel(label) {
    const labels = filterLabels();
    const i = labels.indexOf(label);
    if (i >= 0) labels.splice(i, 1); else labels.push(label);
    ui.labels.value = labels.join(", ");
    onFilter();
  }

  const hasAll = (have, want) => want.every((l) => have.includes(l));

  // ---- drawing -----------------------------------------------------------------------------

  function pill(state) {
    return `<span class="pill s-${esc(state)}">${esc(state.replace("_", " "))}</span>`;
  }

  function chips(labels, active, cls) {
    if (!labels || !labels.length) return "";
    return `<span class="chips">${labels.map((l) =>
      `<button type="button" class="chip${active.includes(l) ? " on" : ""}${cls || ""}" data-label="${esc(l)}" title="Filter by ${esc(l)}">${esc(l)}</button>`
    ).join("")}</span>`;
  }

  function gpus(list) {
    if (!list || !list.length) return `<span class="sub">none</span>`;
    const groups = new Map();
    for (const g of list) {
      const key = `${g.label}\u0000${g.memory_gb}`;
      groups.set(key, (groups.get(key) || 0) + 1);
    }
    return [...groups].map(([key, n]) => {
      const [label, mem] = key.split("\u0000");
      return `<span class="gpu">${n}× ${esc(label)} <span class="sub">${esc(mem)} GB</span></span>`;
    }).join("<br>");
  }

  function wants(w) {
    if (!w) return "";
    const parts = [];
    if (w.type) parts.push(`type ${esc(w.type)}`);
    if (w.min_cpu_count) parts.push(`≥${esc(w.min_cpu_count)} CPU`);
    if (w.min_memory_gb) parts.push(`≥${esc(w.min_memory_gb)} GB`);
    if (w.gpu) {
      const g = w.gpu;
      let text = `${esc(g.count || 1)}× GPU`;
      if (g.label) text += ` “${esc(g.label)}”`;
      if (g.min_memory_gb) text += ` ≥${esc(g.min_memory_gb)} GB`;
      parts.push(text);
    }
    const tags = chips(w.tags || [], filterLabels());
    const not = chips(w.exclude_tags || [], [], " not");
    const rest = parts.length ? `<span class="sub">${parts.join(" · ")}</span>` : "";
    return (tags || not) ? tags + not + rest : (rest || `<span class="sub">anything</span>`);
  }

  function canRelease(a) {
    if (!caller) return false;
    if (caller.role === "open" || caller.role === "admin") return true;
    return caller.role === "user" && caller.name === a.username;
  }

  function releaseButton(a) {
    if (!canRelease(a)) return "";
    const label = a.state === "queued" ? "Cancel" : "Release";
    return `<button type="button" class="danger" data-release="${esc(a.allocation_id)}">${label}</button>`;
  }

  // One cell; its content sits in one box, which the phone layout puts beside the label.
  function cell(label, html, cls) {
    const inner = html ? `<div class="v">${html}</div>` : "";
    return `<td data-label="${label}"${cls ? ` class="${cls}"` : ""}>${inner}</td>`;
  }

  function idTag(id) {
    return `<span class="sub mono" title="${esc(id)}">${short(id)}</span>`;
  }

  function resourceName(r) {
    if (!r) return "";
    return `${r.type} ${short(r.inventory_id)}`;
  }

  function fill(kind, rows, total) {
    const body = document.querySelector(`#${kind} tbody`);
    body.innerHTML = rows.slice(0, ROWS_MAX).join("");
    $(`${kind}-empty`).hidden = total > 0;
    $(`${kind}-empty`).textContent = kind === "inventory" && snapshot.resources.length
      ? "No resource matches the filters." : $(`${kind}-empty`).dataset.text;
    const more = $(`${kind}-more`);
    more.hidden = rows.length <= ROWS_MAX;
    more.textContent = `Showing ${ROWS_MAX} of ${rows.length}; narrow with the filters.`;
    $(`${kind}`).hidden = rows.length === 0;
  }

  function renderCounts(resources, live) {
    const byState = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const r of resources) byState[r.state] = (byState[r.state] || 0) + 1;
    const agents = new Set(resources.map((r) => r.agent_id));
    const online = new Set(resources.filter((r) => r.state !== "offline").map((r) => r.agent_id));
    const queued = live.filter((a) => a.state === "queued").length;
    const tiles = STATES.map((s) =>
      `<button type="button" class="tile s-${s}" data-state="${s}" aria-pressed="${ui.state.value === s}"` +
      ` title="Show ${s} resources only"><span class="n">${byState[s]}</span><span class="k">${s}</span></button>`);
    tiles.push(`<div class="tile s-queued"><span class="n">${queued}</span><span class="k">waiting</span></div>`);
    tiles.push(`<div class="tile s-ready"><span class="n">${live.length - queued}</span><span class="k">allocations</span></div>`);
    tiles.push(`<div class="tile s-agents"><span class="n">${online.size}<small class="of"> / ${agents.size}</small></span><span class="k">agents online</span></div>`);
    ui.counts.innerHTML = tiles.join("");
  }

  function render() {
    if (!snapshot) return;
    const resources = snapshot.resources || [];
    const live = snapshot.allocations || [];
    const byId = new Map(resources.map((r) => [r.inventory_id, r]));
    const holder = new Map();
    for (const a of live) if (a.inventory_id && a.state !== "queued") holder.set(a.inventory_id, a);
    const want = filterLabels();
    const state = ui.state.value;
    renderCounts(resources, live);

    const allLabels = new Set();
    for (const r of resources) for (const l of r.labels) allLabels.add(l);
    const options = [...allLabels].sort().map((l) => `<option value="${esc(l)}">`).join("");
    if (ui.labelsList.dataset.options !== options) {
      ui.labelsList.innerHTML = options; // left alone while unchanged: it may be open
      ui.labelsList.dataset.options = options;
    }

    // Inventory
    const inv = resources.filter((r) => (!state || r.state === state) && hasAll(r.labels, want));
    fill("inventory", inv.map((r) => {
      const a = holder.get(r.inventory_id);
      const held = a
        ? `<span class="user">${esc(a.username)}</span>` +
          `<span class="sub">until ${esc(clock(a.expires))} · <span data-until="${a.expires}" data-warn="300"></span></span>`
        : (r.state === "allocated" ? `<span class="sub">being released</span>` : "");
      const reason = r.reason ? `<span class="reason">${esc(r.reason)}</span>` : "";
      return `<tr data-id="${esc(r.inventory_id)}" data-state="${esc(r.state)}">` +
        cell("State", pill(r.state) + reason) +
        cell("Type", esc(r.type) + idTag(r.inventory_id)) +
        cell("Labels", chips(r.labels, want) || `<span class="sub">none</span>`) +
        cell("CPU", esc(r.cpu_count), "num") +
        cell("Memory", `${esc(r.memory_gb)} GB`, "num") +
        cell("GPUs", gpus(r.gpu)) +
        cell("Agent", `<span class="mono" title="${esc(r.agent_id)}">${short(r.agent_id)}</span>`, "agent") +
        cell("Held by", held) + "</tr>";
    }), inv.length);
    $("n-inventory").textContent = inv.length === resources.length ? resources.length : `${inv.length} of ${resources.length}`;

    // Active allocations: the label filter applies to the resource held.
    const active = live
      .filter((a) => a.state !== "queued")
      .filter((a) => !want.length || hasAll((byId.get(a.inventory_id) || { labels: [] }).labels, want))
      .sort((x, y) => x.expires - y.expires);
    fill("allocations", active.map((a) => {
      const r = byId.get(a.inventory_id);
      const what = r ? esc(r.type) + idTag(r.inventory_id) + chips(r.labels, want) : "";
      return `<tr data-id="${esc(a.allocation_id)}" data-state="${esc(a.state)}">` +
        cell("User", `<span class="user">${esc(a.username)}</span>`) +
        cell("Resource", what) +
        cell("State", pill(a.state)) +
        cell("Since", `<span data-since="${a.created}"></span> ago`, "tabular") +
        cell("Until", esc(clock(a.expires)), "tabular") +
        cell("Left", `<span data-until="${a.expires}" data-warn="300"></span>`, "tabular") +
        cell("", releaseButton(a), "act") + "</tr>";
    }), active.length);
    $("n-allocations").textContent = active.length;

    // Queue: the label filter applies to the tags asked for.
    const queue = live
      .filter((a) => a.state === "queued")
      .filter((a) => !want.length || hasAll((a.wants && a.wants.tags) || [], want))
      .sort((x, y) => (x.position || 1e9) - (y.position || 1e9) || x.created - y.created);
    fill("queue", queue.map((a) => {
      const w = a.wants || {};
      const deadline = a.created + (w.allocation_timeout_seconds || 0);
      return `<tr data-id="${esc(a.allocation_id)}" data-state="queued">` +
        cell("Position", a.position ? "#" + esc(a.position) : "–", "tabular") +
        cell("User", `<span class="user">${esc(a.username)}</span>`) +
        cell("Wants", wants(a.wants)) +
        cell("Waiting", `<span data-since="${a.created}"></span>`, "tabular") +
        cell("Gives up in", `<span data-until="${deadline}"></span>`, "tabular") +
        cell("", releaseButton(a), "act") + "</tr>";
    }), queue.length);
    $("n-queue").textContent = queue.length;

    const filtered = want.length || state;
    ui.note.textContent = filtered ? `Filtered: ${[want.length ? "labels " + want.join(", ") : "", state].filter(Boolean).join(" · ")}` : "";
    ui.clear.hidden = !filtered;
    tick();
  }

  // Countdowns and ages, every second, without redrawing the tables.
  function tick() {
    const now = serverNow();
    for (const el of document.querySelectorAll("[data-until]")) {
      const left = Number(el.dataset.until) - now;
      el.textContent = left > 0 ? duration(left) : "now";
      el.classList.toggle("warn", left > 0 && left < Number(el.dataset.warn || 0));
      el.classList.toggle("over", left <= 0);
    }
    for (const el of document.querySelectorAll("[data-since]")) {
      el.textContent = duration(now - Number(el.dataset.since));
    }
  }

  // ---- the last day's charts, from GET /dashboard/history -----------------------------------

  const HISTORY = "/dashboard/history";
  const HISTORY_EVERY_MS = 5000; // after a change, at most this often
  const DAY_SECS = 86400;
  const COLORS = 8; // classes c0..c7 in style.css
  let historyAt = 0;
  let historyTimer = 0;

  function loadHistorySoon() {
    if (historyTimer) return;
    const wait = Math.max(0, historyAt + HISTORY_EVERY_MS - Date.now());
    historyTimer = setTimeout(loadHistory, wait);
  }

  async function loadHistory() {
    historyTimer = 0;
    historyAt = Date.now();
    let body = null;
    try {
      const response = await fetch(HISTORY, { headers: authHeaders(), cache: "no-store" });
      if (response.ok) body = await response.json();
    } catch (e) {
      return;
    }
    if (body && body.status === 200) renderCharts(body.data.samples || []);
  }

  const axisNumber = (v) => (v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1));

  // A step chart of the last day: each sample's value holds until the next one (the last
  // one's until now). `series`: [{name, points: [[unix, value], ...]}], oldest first.
  function stepChart(id, series, unit, top) {
    const W = 600, H = 150, L = 44, R = 6, T = 8, B = 18;
    const now = serverNow(), from = now - DAY_SECS;
    const high = Math.max(top || 0, 1, ...series.flatMap((s) => s.points.map((p) => p[1])));
    const x = (t) => (L + ((Math.max(t, from) - from) / DAY_SECS) * (W - L - R)).toFixed(1);
    const y = (v) => (T + (1 - v / high) * (H - T - B)).toFixed(1);
    const grid = [0, high / 2, high].map((v) =>
      `<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/>` +
      `<text class="axis" x="${L - 4}" y="${Number(y(v)) + 3}" text-anchor="end">${axisNumber(v)}${esc(unit)}</text>`);
    const hours = [24, 18, 12, 6, 0].map((h) =>
      `<text class="axis" x="${x(now - h * 3600)}" y="${H - 4}" text-anchor="${h === 24 ? "start" : h ? "middle" : "end"}">${h ? "−" + h + "h" : "now"}</text>`);
    const lines = series.map((s, i) => {
      const pts = [];
      s.points.forEach(([t, v], k) => {
        const until = k + 1 < s.points.length ? s.points[k + 1][0] : now;
        pts.push(`${x(t)},${y(v)}`, `${x(until)},${y(v)}`);
      });
      // The current value, as a dot at now: visible even while the history is one minute.
      const last = s.points[s.points.length - 1];
      const dot = last ? `<circle class="c${i % COLORS}" cx="${x(now)}" cy="${y(last[1])}" r="3"/>` : "";
      return `<polyline class="c${i % COLORS}" data-series="${esc(s.name)}" points="${pts.join(" ")}"/>${dot}`;
    });
    const legend = series.map((s, i) =>
      `<span class="key"><svg viewBox="0 0 10 10" aria-hidden="true"><rect class="c${i % COLORS}" width="10" height="10" rx="2"/></svg>${esc(s.name)}</span>`);
    $(id).innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(series.map((s) => s.name).join(", "))}">` +
      `${grid.join("")}${hours.join("")}${lines.join("")}</svg><div class="legend">${legend.join("")}</div>`;
  }

  function renderCharts(samples) {
    const models = new Map();
    for (const s of samples) {
      for (const u of s.utilization || []) {
        if (!models.has(u.key)) models.set(u.key, []);
        models.get(u.key).push([s.at, u.total ? (100 * u.held) / u.total : 0]);
      }
    }
    const utilization = [...models].map(([name, points]) => ({ name, points }));
    stepChart("chart-utilization", utilization, "%", 100);
    stepChart("chart-queue", [{ name: "waiting", points: samples.map((s) => [s.at, s.queued]) }], "", 1);
    const mean = samples.map((s) => [s.at, s.waits ? s.wait_secs_total / s.waits : 0]);
    const longest = samples.map((s) => [s.at, s.wait_secs_max]);
    stepChart("chart-wait", [{ name: "mean wait", points: mean }, { name: "longest wait", points: longest }], "s", 1);
    $("charts-note").textContent = samples.length ? `a sample a minute, ${samples.length} so far` : "";
    document.body.dataset.historySamples = String(samples.length);
  }

  // ---- the feed ----------------------------------------------------------------------------

  // `fresh`: a snapshot asked for just now (it may be older than the one shown when the
  // server restarted); a snapshot from the feed older than the one shown is ignored, as a
  // new feed socket starts with the newest snapshot published, which a probe may have passed.
  function accept(data, fresh) {
    if (!data || typeof data !== "object") return;
    if (data.caller) setCaller(data.caller);
    if (data.type === "hello") {
      clockOffset = data.now - Date.now() / 1000;
    } else if (data.type === "snapshot") {
      if (!fresh && snapshot && data.version < snapshot.version) return;
      snapshot = data;
      updates += 1;
      document.body.dataset.updates = String(updates);
      ui.updated.textContent = "updated " + new Date().toLocaleTimeString();
      render();
      loadHistorySoon();
    }
  }

  function setCaller(c) {
    caller = c;
    const names = { open: "open server", admin: "admin", user: "user" };
    ui.who.textContent = (names[c.role] || c.role) + (c.name ? " " + c.name : "");
    ui.who.title = c.role === "open"
      ? "No tokens are configured: everyone may do everything"
      : "Signed in with a token (click to change)";
    render();
  }

  function showAuth(message) {
    closeSocket();
    ui.auth.hidden = false;
    ui.main.hidden = true;
    ui.authError.textContent = message || "";
    setLive("down", "needs a token");
    ui.who.textContent = "token";
    ui.token.focus();
  }

  // One snapshot over plain HTTP: the first paint, the token check, and the poll fallback.
  async function probe() {
    let response;
    try {
      response = await fetch(FEED, { headers: authHeaders(), cache: "no-store" });
    } catch (e) {
      return "down";
    }
    if (response.status === 401) {
      showAuth(token() ? "That token was not accepted." : "");
      return "auth";
    }
    const body = await response.json().catch(() => null);
    if (response.status === 403) {
      showAuth((body && body.error && body.error.message) || "This token may not see the dashboard.");
      return "auth";
    }
    if (!response.ok || !body || body.status !== 200) return "down";
    ui.auth.hidden = true;
    ui.main.hidden = false;
    clockOffset = body.data.at - Date.now() / 1000;
    accept(body.data, true);
    return "ok";
  }

  function closeSocket() {
    clearTimeout(retryTimer);
    clearTimeout(pollTimer);
    if (socket) {
      socket.onclose = null;
      socket.close();
      socket = null;
    }
  }

  function retry() {
    clearTimeout(retryTimer);
    setLive("reconnecting", "reconnecting…");
    retryTimer = setTimeout(start, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MS_MAX);
  }

  function poll() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(async () => {
      const got = await probe();
      if (got === "auth") return;
      setLive(got === "ok" ? "polling" : "down", got === "ok" ? "live (polling)" : "server unreachable");
      poll();
    }, POLL_MS);
  }

  function connect() {
    const url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + FEED;
    const protocols = token() ? ["allocate", "bearer." + token()] : ["allocate"];
    let ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (e) {
      // A token with characters a subprotocol cannot carry: fall back to polling.
      setLive("polling", "live (polling)");
      poll();
      return;
    }
    socket = ws;
    ws.onopen = () => { retryMs = 1000; setLive("live", "live"); };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.status === 200) accept(message.data, false);
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      retry();
    };
  }

  async function start() {
    closeSocket();
    setLive("connecting", "connecting…");
    const got = await probe();
    if (got === "auth") return;
    if (got === "down") return retry();
    connect();
  }

  // ---- actions -----------------------------------------------------------------------------

  async function release(id) {
    const a = ((snapshot && snapshot.allocations) || []).find((x) => x.allocation_id === id);
    if (!a) return;
    const r = (snapshot.resources || []).find((x) => x.inventory_id === a.inventory_id);
    const question = a.state === "queued"
      ? `Cancel ${a.username}'s waiting request (position ${a.position || "?"})?`
      : `Release ${a.username}'s allocation of ${resourceName(r) || "its resource"}?\n\nTheir lease ends now and the machine goes back to the pool.`;
    if (!window.confirm(question)) return;
    let response;
    try {
      response = await fetch("/allocate/" + encodeURIComponent(id),
        { method: "DELETE", headers: authHeaders() });
    } catch (e) {
      return toast("The server could not be reached.", true);
    }
    const body = await response.json().catch(() => null);
    if (response.ok) {
      toast(a.state === "queued" ? `Cancelled ${a.username}'s request.` : `Released ${a.username}'s allocation.`);
    } else {
      toast((body && body.error && body.error.message) || `Release failed (${response.status}).`, true);
    }
  }

  function wire() {
    for (const kind of ["inventory", "allocations", "queue"]) {
      const empty = $(`${kind}-empty`);
      empty.dataset.text = empty.textContent;
    }
    document.addEventListener("click", (event) => {
      const target = event.target.closest("button");
      if (!target) return;
      if (target.dataset.release) {
        release(target.dataset.release);
      } else if (target.dataset.label !== undefined && target.classList.contains("chip")) {
        toggleLabel(target.dataset.label);
      } else if (target.classList.contains("tile") && target.dataset.state) {
        ui.state.value = ui.state.value === target.dataset.state ? "" : target.dataset.state;
        onFilter();
      }
    });
    ui.labels.addEventListener("input", onFilter);
    ui.state.addEventListener("change", onFilter);
    ui.clear.addEventListener("click", () => { ui.labels.value = ""; ui.state.value = ""; onFilter(); });
    window.addEventListener("hashchange", () => { readHash(); render(); });
    ui.tokenForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = ui.token.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      ui.token.value = "";
      retryMs = 1000;
      start();
    });
    ui.forget.addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      ui.token.value = "";
      start();
    });
    ui.who.addEventListener("click", () => {
      if (caller && caller.role === "open") return toast("This server runs open: no token is needed.");
      ui.auth.hidden = !ui.auth.hidden;
      if (!ui.auth.hidden) ui.token.focus();
    });
  }

  readHash();
  wire();
  setInterval(tick, 1000);
  setInterval(() => {
    if (snapshot && ui.auth.hidden) loadHistory();
  }, 60000);
  start();
})();
