// The MES console: operators take and work orders, sellers approve quotes. Plain DOM, no build step.
// Every piece of data reaches the page through textContent or an attribute, never through innerHTML.
"use strict";

(() => {
  const TOKEN_KEY = "alexandrite.console.token";
  const CONSOLE_ROLES = ["operator", "seller", "admin"];
  const BASE = new URL("..", document.baseURI); // the console lives at <api>/console/
  const MAX_PAGE = 200;
  // Rows per page; `?limit=N` in the console's address overrides it (1..200).
  const PAGE_SIZE = Math.min(MAX_PAGE, Math.max(1, Number(new URLSearchParams(location.search).get("limit")) || 50));

  // How to send each command the API may list in an order's `allowed`: its path and a button label.
  // Which commands apply when comes from the server (`allowed`), never from this table.
  const ACTIONS = {
    StartManufacturing: { path: "take", label: "Take" },
    CompleteManufacturing: { path: "complete", label: "Complete" },
    StartPackaging: { path: "package", label: "Package" },
    ShipOrder: { path: "ship", label: "Ship…", form: "ship" },
    ApproveManufacturing: { path: "approve", label: "Approve" },
    RepriceOrder: { path: "reprice", label: "Re-price" },
    CloseOrder: { path: "close", label: "Close" },
    SubmitOrder: { path: "submit", label: "Submit" },
    CancelOrder: { path: "cancel", label: "Cancel…", form: "cancel", danger: true },
    HoldOrder: { path: "hold", label: "Hold…", form: "hold" },
    ReleaseOrder: { path: "release", label: "Release" },
  };

  // Views per role: each is a preset of filters; the filter bar can refine it. The operators' queue is
  // earliest promised first: of the orders in it, bench/dispatch.py found that order keeps most promises.
  const TABS = {
    queue: { label: "Approved, waiting", roles: ["operator", "admin"], profile: true,
             preset: { status: "MANUFACTURING_APPROVED", sort: "due", held: "false" } },
    mine: { label: "My orders", roles: ["operator", "admin"], preset: { sort: "due" }, mine: true },
    quotes: { label: "Quotes to approve", roles: ["seller", "admin"],
              preset: { status: "PRICE_CALCULATED", sort: "created" } },
    all: { label: "All orders", roles: ["operator", "seller", "admin"], preset: { sort: "created" } },
  };

  // A seller approving a quote that holds less than this long is asked first: metal prices move daily.
  const QUOTE_WARNING_SECONDS = 3600;

  const state = {
    token: null,
    actor: null, // {sub, role}
    tab: null,
    rows: [],
    nextCursor: null,
    seq: 0,
    rowEls: new Map(),
    versions: new Map(), // order id -> version last rendered, to highlight changes
    orders: new Map(), // order id -> {version, order} from the command API (with `allowed`)
    busy: new Set(),
    detailId: null,
    stream: null,
    reloadTimer: null,
    reloadPosition: 0,
    statsTimer: null,
    statsLast: 0,
    statsInterval: null,
    dialogOrder: null,
    works: null, // the material codes the operator's profile offers (GET /operators/{id}); null: every one
    previewKey: null, // the order and preview the 3D view shows
  };

  const $ = (id) => document.getElementById(id);

  // ---- DOM building -------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
    for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return el;
  }

  // ---- formatting ---------------------------------------------------------------------------

  const digitsCache = new Map();
  function currencyDigits(currency) {
    if (!digitsCache.has(currency)) {
      let digits = 2;
      try {
        digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
          .maximumFractionDigits;
      } catch (e) { /* an unknown code: assume cents */ }
      digitsCache.set(currency, digits);
    }
    return digitsCache.get(currency);
  }

  // Integer minor units to "12,345.67 EUR", in integer arithmetic (BigInt), never through a float.
  function formatMoney(minor, currency) {
    if (minor === null || minor === undefined || !currency) return "—";
    let n = BigInt(minor);
    const negative = n < 0n;
    if (negative) n = -n;
    const digits = currencyDigits(currency);
    const base = 10n ** BigInt(digits);
    let text = (n / base).toLocaleString("en-US");
    if (digits > 0) text += "." + (n % base).toString().padStart(digits, "0");
    return (negative ? "-" : "") + text + " " + currency;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function formatTime(iso) {
    if (!iso) return "";
    const t = new Date(iso);
    if (Number.isNaN(t.getTime())) return String(iso);
    return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}`;
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const sec = Math.max(0, Number(seconds));
    if (sec < 90) return `${Math.round(sec)} s`;
    if (sec < 90 * 60) return `${Math.round(sec / 60)} min`;
    if (sec < 48 * 3600) return `${Math.round(sec / 3600)} h`;
    return `${Math.round(sec / 86400)} d`;
  }

  function ago(iso) {
    if (!iso) return "—";
    const t = new Date(iso).getTime();
    if (Number.isNaN(t)) return String(iso);
    return `${formatDuration((Date.now() - t) / 1000)} ago`;
  }

  const human = (status) => String(status || "").replaceAll("_", " ").toLowerCase();

  // Until when an order's quote holds: a list row carries quote_valid_until, an order its quote.
  function quoteHoldsUntil(order) {
    return order.quote_valid_until || (order.quote && order.quote.valid_until) || null;
  }

  function secondsLeft(iso) {
    return (new Date(iso).getTime() - Date.now()) / 1000;
  }

  function quoteTerm(iso) {
    const left = secondsLeft(iso);
    return left > 0 ? `holds ${formatDuration(left)} more` : `expired ${formatDuration(-left)} ago`;
  }

  // ---- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super(describeError(status, body));
      this.status = status;
      this.body = body || {};
    }
  }

  function describeError(status, body) {
    if (!body || typeof body !== "object") return `The server answered ${status}.`;
    let text = body.detail || body.error || `The server answered ${status}.`;
    if (Array.isArray(body.problems) && body.problems.length) {
      text += ": " + body.problems.map((p) => [p.key, p.message].filter(Boolean).join(" ")).join("; ");
    }
    return text;
  }

  function apiUrl(path, params) {
    const url = new URL(path.replace(/^\//, ""), BASE);
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "" && value !== false) url.searchParams.set(key, value);
    }
    return url;
  }

  async function api(path, { method = "GET", params, body, token = state.token } = {}) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(apiUrl(path, params), {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, { detail: "Cannot reach the server; check the connection and try again." });
    }
    let data = null;
    try { data = await response.json(); } catch (e) { /* an empty or non-JSON body */ }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      if (response.status === 401 && state.token && token === state.token) signOut(`Signed out: ${error.message}`);
      throw error;
    }
    const position = Number(response.headers.get("X-Position")) || 0;
    return { data, position };
  }

  // A read that asks the view to catch up; if it is still behind after the server's wait, read anyway.
  async function read(path, params, minPosition) {
    if (!minPosition) return api(path, { params });
    try {
      return await api(path, { params: { ...params, min_position: minPosition } });
    } catch (e) {
      if (e.status !== 503) throw e;
      return api(path, { params });
    }
  }

  // ---- sign-in ------------------------------------------------------------------------------

  function decodeClaims(token) {
    const parts = token.split(".");
    if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p))) {
      throw new Error("That is not a JWT: a token is three base64url parts separated by dots.");
    }
    try {
      const b64 = parts[1].replaceAll("-", "+").replaceAll("_", "/").padEnd(Math.ceil(parts[1].length / 4) * 4, "=");
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      if (!claims || typeof claims !== "object") throw new Error("not an object");
      return claims;
    } catch (e) {
      throw new Error("The token's payload cannot be read; paste the whole token.");
    }
  }

  function showSigninError(message) {
    const el = $("signin-error");
    el.textContent = message;
    el.hidden = !message;
  }

  async function signIn(raw, { quiet = false } = {}) {
    const token = String(raw || "").trim().replace(/^bearer\s+/i, "");
    if (!token) {
      showSigninError("Paste a token first.");
      return;
    }
    let claims;
    try {
      claims = decodeClaims(token);
    } catch (e) {
      showSigninError(e.message);
      return;
    }
    const role = String(claims.role || "");
    const sub = String(claims.sub || "");
    if (!CONSOLE_ROLES.includes(role)) {
      showSigninError(`The console is for operators and sellers; this token's role is "${role || "none"}".`);
      return;
    }
    if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) {
      showSigninError(`This token expired on ${formatTime(new Date(claims.exp * 1000).toISOString())}.`);
      return;
    }
    $("signin-button").disabled = true;
    let stats;
    try {
      stats = (await api("/mes/stats", { token })).data;
    } catch (e) {
      const prefix = e.status === 401 ? "The server refused this token: " : "";
      showSigninError(prefix + e.message);
      if (quiet) sessionStorage.removeItem(TOKEN_KEY);
      return;
    } finally {
      $("signin-button").disabled = false;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    state.token = token;
    state.actor = { sub, role };
    showSigninError("");
    $("token").value = "";
    enterApp(stats);
  }

  function signOut(message) {
    stopStream();
    clearInterval(state.statsInterval);
    clearTimeout(state.reloadTimer);
    clearTimeout(state.statsTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    Object.assign(state, {
      token: null, actor: null, tab: null, rows: [], nextCursor: null, detailId: null,
      rowEls: new Map(), versions: new Map(), orders: new Map(), busy: new Set(), works: null,
    });
    state.seq += 1;
    $("rows").replaceChildren();
    $("detail").hidden = true;
    $("app-view").hidden = true;
    $("session").hidden = true;
    $("signin-view").hidden = false;
    showSigninError(message || "");
    $("token").focus();
  }

  function enterApp(stats) {
    $("whoami").textContent = `${state.actor.sub} (${state.actor.role})`;
    $("whoami").title = `Signed in as ${state.actor.sub}, role ${state.actor.role}`;
    $("signin-view").hidden = true;
    $("session").hidden = false;
    $("app-view").hidden = false;
    fillStatuses(Object.keys(stats.counts || {}));
    renderStats(stats);
    buildTabs();
    $("take-next").hidden = state.actor.role !== "operator";
    loadMaterials();
    startStream();
    state.statsInterval = setInterval(() => refreshStats(), 60000);
    const first = Object.keys(TABS).find((t) => TABS[t].roles.includes(state.actor.role));
    // The queue shows what take-next offers: the profile first, so the first list is already the right one.
    loadProfile().then(() => { if (state.token) selectTab(first); });
  }

  // What the operator works, by their profile (materials declared and those made at their work centres).
  async function loadProfile() {
    state.works = null;
    if (state.actor.role !== "operator") return;
    try {
      const { data } = await api(`/operators/${encodeURIComponent(state.actor.sub)}`);
      state.works = Array.isArray(data.works) ? data.works : null;
    } catch (e) {
      if (e.status !== 401) notify(`Your profile could not be read, so the queue shows every material: ${e.message}`, "error");
    }
  }

  // The tab's preset, with the operator's materials in the queue.
  function presetOf(key) {
    const preset = TABS[key].preset;
    if (!TABS[key].profile || !state.works || !state.works.length) return preset;
    return { ...preset, material_code: state.works.join(",") };
  }

  // The queue of an operator whose profile offers no material now is empty, as take-next is (204);
  // typing a material in the filter looks anyway.
  function profileEmpty() {
    return Boolean(TABS[state.tab].profile && state.works && !state.works.length && !$("f-material").value.trim());
  }

  function showQueueNote() {
    const note = $("queue-note");
    note.hidden = !(TABS[state.tab] && TABS[state.tab].profile && state.works);
    if (note.hidden) return;
    note.textContent = state.works.length
      ? `Your profile: ${state.works.join(", ")}. Clear the material filter to see every material.`
      : "Your profile's materials and work centres offer no material now, so nothing here is for you. "
        + "Type a material in the filter to look anyway.";
  }

  // ---- filters and tabs ---------------------------------------------------------------------

  function fillStatuses(statuses) {
    const select = $("f-status");
    select.replaceChildren(h("option", { value: "" }, "any"));
    for (const status of statuses) select.append(h("option", { value: status }, status));
  }

  function ensureStatusOption(status) {
    const select = $("f-status");
    if (status && ![...select.options].some((o) => o.value === status)) {
      select.append(h("option", { value: status }, status));
    }
  }

  async function loadMaterials() {
    try {
      const { data } = await api("/shop/catalog");
      const list = $("materials");
      list.replaceChildren(...(data.materials || []).map((m) => h("option", { value: m.code }, m.name || m.code)));
    } catch (e) { /* the datalist is a convenience only */ }
  }

  function buildTabs() {
    const nav = $("tabs");
    nav.replaceChildren();
    for (const [key, tab] of Object.entries(TABS)) {
      if (!tab.roles.includes(state.actor.role)) continue;
      nav.append(h("button", {
        type: "button", id: `tab-${key}`, "data-testid": `tab-${key}`, "data-tab": key, "aria-pressed": "false",
        onclick: () => selectTab(key),
      }, tab.label));
    }
  }

  function selectTab(key) {
    state.tab = key;
    for (const button of $("tabs").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(button.dataset.tab === key));
    }
    $("list-title").textContent = TABS[key].mine ? `Orders taken by ${state.actor.sub}` : TABS[key].label;
    setFilters(presetOf(key));
    showQueueNote();
    reload({ fresh: true });
  }

  function setFilters(preset) {
    ensureStatusOption(preset.status);
    $("f-q").value = preset.q || "";
    $("f-status").value = preset.status || "";
    $("f-material").value = preset.material_code || "";
    $("f-channel").value = preset.channel || "";
    $("f-overdue").checked = Boolean(preset.overdue);
    $("f-stuck").checked = Boolean(preset.stuck);
    $("f-held").value = preset.held || "";
    $("f-sort").value = preset.sort || "approved";
  }

  function filterParams() {
    return {
      q: $("f-q").value.trim(),
      status: $("f-status").value,
      material_code: $("f-material").value.trim().toUpperCase(),
      channel: $("f-channel").value,
      overdue: $("f-overdue").checked ? "true" : "",
      stuck: $("f-stuck").checked ? "true" : "",
      held: $("f-held").value,
      sort: $("f-sort").value,
      operator_id: TABS[state.tab].mine ? state.actor.sub : "",
    };
  }

  // ---- the table ----------------------------------------------------------------------------

  // Load the first page again (fresh: PAGE_SIZE rows; otherwise as many rows as are shown now).
  async function reload({ fresh = false, minPosition = 0 } = {}) {
    const seq = ++state.seq;
    const limit = fresh ? PAGE_SIZE : Math.min(MAX_PAGE, Math.max(PAGE_SIZE, state.rows.length));
    if (profileEmpty()) {
      state.rows = [];
      state.nextCursor = null;
      renderRows({ highlight: false });
      return;
    }
    $("orders").setAttribute("aria-busy", "true");
    try {
      const { data } = await read("/mes/orders", { ...filterParams(), limit }, minPosition);
      if (seq !== state.seq) return;
      state.rows = data.items;
      state.nextCursor = data.next_cursor;
      renderRows({ highlight: !fresh });
    } catch (e) {
      if (seq === state.seq && state.token) notify(e.message, "error");
    } finally {
      if (seq === state.seq) $("orders").removeAttribute("aria-busy");
    }
  }

  async function more() {
    if (!state.nextCursor) return;
    const seq = ++state.seq;
    $("more").disabled = true;
    try {
      const { data } = await api("/mes/orders", { params: { ...filterParams(), limit: PAGE_SIZE, cursor: state.nextCursor } });
      if (seq !== state.seq) return;
      const known = new Set(state.rows.map((r) => r.order_id));
      state.rows = state.rows.concat(data.items.filter((r) => !known.has(r.order_id)));
      state.nextCursor = data.next_cursor;
      renderRows({ highlight: false });
    } catch (e) {
      notify(e.message, "error");
    } finally {
      $("more").disabled = false;
    }
  }

  function scheduleReload(position) {
    state.reloadPosition = Math.max(state.reloadPosition, position || 0);
    if (state.reloadTimer) return;
    state.reloadTimer = setTimeout(() => {
      state.reloadTimer = null;
      const minPosition = state.reloadPosition;
      state.reloadPosition = 0;
      reload({ minPosition });
    }, 120);
  }

  function renderRows({ highlight }) {
    const tbody = $("rows");
    const next = new Map();
    let at = tbody.firstChild;
    for (const item of state.rows) {
      const old = state.rowEls.get(item.order_id);
      // A row is kept only if nothing it shows changed: not only the version, as a parked mark, and the
      // overdue and stuck flags that time sets, change no version.
      const shown = JSON.stringify(item);
      let tr;
      if (old && old.dataset.shown === shown) {
        tr = old;
      } else {
        tr = rowFor(item);
        tr.dataset.shown = shown;
        if (highlight) flash(tr);
        if (old) {
          if (old === at) at = at.nextSibling;
          old.remove();
        }
      }
      next.set(item.order_id, tr);
      if (tr !== at) tbody.insertBefore(tr, at);
      else at = at.nextSibling;
      at = tr.nextSibling;
    }
    for (const [id, tr] of state.rowEls) if (next.get(id) !== tr) tr.remove();
    state.rowEls = next;
    $("empty").hidden = state.rows.length > 0;
    $("more").hidden = !state.nextCursor;
    $("count").textContent = `${state.rows.length} order${state.rows.length === 1 ? "" : "s"} shown${state.nextCursor ? "; more below" : ""}`;
    for (const item of state.rows) fillActions(item);
  }

  function flash(tr) {
    tr.classList.add("changed");
    setTimeout(() => tr.classList.remove("changed"), 2500);
  }

  function rowFor(item) {
    const mine = item.operator_id && item.operator_id === state.actor.sub;
    const flags = [
      item.overdue ? h("span", { class: "badge warn", "data-testid": "overdue" }, "overdue") : null,
      item.stuck ? h("span", { class: "badge bad", "data-testid": "stuck" }, "stuck") : null,
      item.held_since ? h("span", {
        class: "badge warn", "data-testid": "held",
        title: `On hold since ${formatTime(item.held_since)}: ${item.hold_reason}`,
      }, `on hold: ${item.hold_reason}`) : null,
      // The view holds this order's events back since one could not be applied: what it shows may be old.
      item.parked_since ? h("span", {
        class: "badge bad", "data-testid": "parked",
        title: `Not updated since ${new Date(item.parked_since).toLocaleString()}: ${item.parked_reason}`,
      }, `stale since ${new Date(item.parked_since).toLocaleString()}`) : null,
    ];
    const tr = h("tr", {
      "data-testid": "order-row", "data-order-id": item.order_id, "data-number": item.number,
      "data-status": item.status, "data-version": item.version,
    },
      h("th", { scope: "row", "data-col": "number" },
        h("button", { type: "button", class: "link", "data-testid": "open", "aria-label": `Details of ${item.number}`,
                      onclick: () => openDetail(item.order_id) }, item.number)),
      h("td", { "data-col": "item" }, item.item_title),
      h("td", { "data-col": "contact" }, item.contact_name, h("span", { class: "muted small" }, ` · ${item.channel}`)),
      h("td", { "data-col": "material" }, item.material_code),
      h("td", { "data-col": "quantity", class: "num" }, item.quantity),
      h("td", { "data-col": "status" }, h("span", { class: `status s-${item.status}` }, human(item.status)), " ", flags),
      h("td", { "data-col": "approved", title: item.approved_at ? formatTime(item.approved_at) : "" }, item.approved_at ? ago(item.approved_at) : "—"),
      h("td", { "data-col": "promised" }, item.promised_date || "—"),
      h("td", { "data-col": "urgency", class: urgencyClass(item), title: item.start_by ? `Start by ${formatTime(item.start_by)} to keep the promised date` : "" }, item.urgency || "—"),
      h("td", { "data-col": "quote", class: "num" }, formatMoney(item.quote_total_minor, item.currency), quoteBadge(item)),
      h("td", { "data-col": "operator", class: mine ? "me" : "" }, item.operator_id ? (mine ? `${item.operator_id} (you)` : item.operator_id) : "—"),
      h("td", { "data-col": "actions", class: "actions" }),
    );
    tr.addEventListener("dblclick", () => openDetail(item.order_id));
    return tr;
  }

  // Late to start (negative slack) in red, less than a day to spare in amber.
  function urgencyClass(item) {
    if (item.slack_seconds === null || item.slack_seconds === undefined) return "";
    if (item.slack_seconds < 0) return "urgent late";
    return item.slack_seconds < 86400 ? "urgent soon" : "";
  }

  // On a quote waiting for approval: whether it is about to expire, or has.
  function quoteBadge(item) {
    const until = quoteHoldsUntil(item);
    if (!until || item.status !== "PRICE_CALCULATED") return null;
    const left = secondsLeft(until);
    if (left > QUOTE_WARNING_SECONDS) return null;
    return h("span", {
      class: `badge ${left > 0 ? "warn" : "bad"}`, "data-testid": left > 0 ? "quote-expiring" : "quote-expired",
      title: `The quote holds until ${formatTime(until)}`,
    }, left > 0 ? `expires in ${formatDuration(left)}` : "expired");
  }

  // The buttons of a row come from the command API's `allowed` for this caller and this version.
  async function fillActions(item) {
    const tr = state.rowEls.get(item.order_id);
    if (!tr) return;
    const cell = tr.querySelector('[data-col="actions"]');
    if (Array.isArray(item.allowed)) { // the read API says what this caller may do: no extra request
      renderActions(cell, {
        order_id: item.order_id, number: item.number, version: item.version, allowed: item.allowed,
        quote_valid_until: item.quote_valid_until,
      });
      return;
    }
    const known = state.orders.get(item.order_id);
    if (known && known.version >= item.version) {
      renderActions(cell, known.order);
      return;
    }
    if (!cell.firstChild) cell.append(h("span", { class: "muted", "aria-label": "loading actions" }, "…"));
    const order = await writeSideOrder(item.order_id, item.version);
    if (order && state.rowEls.get(item.order_id) === tr) renderActions(cell, order);
  }

  const inflight = new Map();
  let active = 0;
  const waiting = [];
  function limited(job) {
    return new Promise((resolve, reject) => {
      waiting.push(() => job().then(resolve, reject));
      pump();
    });
  }
  function pump() {
    while (active < 6 && waiting.length) {
      const job = waiting.shift();
      active += 1;
      job().finally(() => { active -= 1; pump(); });
    }
  }

  // The order as the command API holds it (with `allowed`), cached per version.
  function writeSideOrder(id, atLeastVersion = 0, { force = false } = {}) {
    const known = state.orders.get(id);
    if (!force && known && known.version >= atLeastVersion) return Promise.resolve(known.order);
    const key = `${id}@${atLeastVersion}@${force}`;
    if (inflight.has(key)) return inflight.get(key);
    const token = state.token;
    const promise = limited(() => api(`/orders/${id}`))
      .then(({ data }) => {
        if (token !== state.token) return null;
        const current = state.orders.get(id);
        if (!current || current.version <= data.version) state.orders.set(id, { version: data.version, order: data });
        return state.orders.get(id).order;
      })
      .catch(() => null)
      .finally(() => inflight.delete(key));
    inflight.set(key, promise);
    return promise;
  }

  function actionButtons(order, { testidPrefix = "" } = {}) {
    const buttons = [];
    for (const [command, action] of Object.entries(ACTIONS)) {
      if (!order.allowed.includes(command)) continue;
      buttons.push(h("button", {
        type: "button", class: action.danger ? "danger" : "", "data-action": action.path,
        "data-testid": `${testidPrefix}action-${action.path}`,
        "aria-label": `${action.label.replace("…", "")} ${order.number}`, disabled: state.busy.has(order.order_id),
        onclick: () => startAction(order, command),
      }, action.label));
    }
    return buttons;
  }

  function renderActions(cell, order) {
    // Leave the buttons alone when nothing about them changed, so a live update keeps keyboard focus.
    const key = `${order.version}:${state.busy.has(order.order_id)}`;
    if (cell.dataset.rendered === key) return;
    cell.dataset.rendered = key;
    const buttons = actionButtons(order);
    cell.replaceChildren(...(buttons.length ? buttons : [h("span", { class: "muted" }, "—")]));
  }

  // ---- commands -----------------------------------------------------------------------------

  function startAction(order, command) {
    const action = ACTIONS[command];
    if (command === "ApproveManufacturing" && !approvalConfirmed(order)) return null;
    if (action.form === "ship") return openDialog("ship", order);
    if (action.form === "cancel") return openDialog("cancel", order);
    if (action.form === "hold") return openDialog("hold", order);
    return runCommand(order, command);
  }

  // Approving commits to the quote's price: ask before doing it under a quote about to expire, and offer
  // the re-price instead of an approval the server would refuse under an expired one.
  function approvalConfirmed(order) {
    const until = quoteHoldsUntil(order);
    if (!until) return true;
    const left = secondsLeft(until);
    if (left <= 0) {
      const offer = `The quote of ${order.number} expired at ${formatTime(until)}; metal prices may have moved since.`;
      if (!order.allowed.includes("RepriceOrder")) {
        notify(offer, "error");
      } else if (window.confirm(`${offer}\n\nRe-price it at today's catalog now?`)) {
        runCommand(order, "RepriceOrder");
      }
      return false;
    }
    if (left >= QUOTE_WARNING_SECONDS) return true;
    return window.confirm(
      `The quote of ${order.number} expires in ${formatDuration(left)} (at ${formatTime(until)}). Approve at this price?`);
  }

  function setBusy(id, busy) {
    if (busy) state.busy.add(id);
    else state.busy.delete(id);
    const selector = `[data-order-id="${CSS.escape(id)}"] button[data-action], #detail-actions button[data-action]`;
    for (const b of document.querySelectorAll(selector)) {
      if (b.closest("#detail-actions") && state.detailId !== id) continue;
      b.disabled = busy;
    }
  }

  const DONE = {
    StartManufacturing: (o) => `You took ${o.number}. It is in My orders now.`,
    CompleteManufacturing: (o) => `${o.number}: manufacturing completed.`,
    StartPackaging: (o) => `${o.number}: packaging started.`,
    ShipOrder: (o) => `${o.number} shipped with ${o.carrier}, tracking ${o.tracking_number}.`,
    ApproveManufacturing: (o) => `${o.number} approved for manufacturing.`,
    RepriceOrder: (o) => `${o.number} is being priced again at today's catalog.`,
    CancelOrder: (o) => `${o.number} cancelled.`,
    HoldOrder: (o) => `${o.number} is on hold: ${o.hold_reason}.`,
    ReleaseOrder: (o) => `${o.number} released from its hold.`,
    CloseOrder: (o) => `${o.number} closed.`,
  };

  // Send one command; returns an error message for a form to show, or null when it went through.
  async function runCommand(order, command, body) {
    const action = ACTIONS[command];
    setBusy(order.order_id, true);
    try {
      const { data, position } = await api(`/orders/${order.order_id}/${action.path}`, { method: "POST", body });
      state.orders.set(order.order_id, { version: data.version, order: data });
      notify((DONE[command] || ((o) => `${o.number}: ${human(o.status)}.`))(data), "ok");
      if (state.detailId === order.order_id) renderDetail(data, null);
      await reload({ minPosition: position });
      if (state.detailId === order.order_id) loadHistory(order.order_id);
      scheduleStats();
      return null;
    } catch (e) {
      if (e.status === 409 && e.body.taken_by) {
        notify(`Too late: ${e.message}.`, "error", { takenBy: e.body.taken_by });
      } else if (e.status !== 401) {
        notify(e.message, "error");
      }
      writeSideOrder(order.order_id, 0, { force: true }).then((fresh) => {
        if (fresh && state.detailId === order.order_id) renderDetail(fresh, null);
      });
      reload();
      return e.message;
    } finally {
      setBusy(order.order_id, false);
    }
  }

  // The server picks: the most urgent approved order of the operator's materials, taken for them at once.
  async function takeNext() {
    const button = $("take-next");
    button.disabled = true;
    try {
      const { data, position } = await api("/orders/take-next", { method: "POST" });
      if (!data) {
        notify("Nothing is waiting for you: no approved order of the materials you work.", "info");
        return;
      }
      state.orders.set(data.order_id, { version: data.version, order: data });
      notify(DONE.StartManufacturing(data), "ok");
      await reload({ minPosition: position });
      openDetail(data.order_id);
      scheduleStats();
    } catch (e) {
      if (e.status !== 401) notify(e.message, "error");
    } finally {
      button.disabled = false;
    }
  }

  function openDialog(kind, order) {
    state.dialogOrder = order;
    const dialog = $(`${kind}-dialog`);
    $(`${kind}-number`).textContent = order.number;
    $(`${kind}-error`).hidden = true;
    dialog.querySelector("form").reset();
    dialog.showModal();
  }

  async function submitDialog(kind, event) {
    event.preventDefault();
    const dialog = $(`${kind}-dialog`);
    const order = state.dialogOrder;
    const error = $(`${kind}-error`);
    let body;
    let command;
    if (kind === "ship") {
      body = { carrier: $("ship-carrier").value.trim(), tracking_number: $("ship-tracking").value.trim() };
      command = "ShipOrder";
      if (!body.carrier || !body.tracking_number) {
        error.textContent = "Name the carrier and the tracking number.";
        error.hidden = false;
        return;
      }
    } else {
      body = { reason: $(`${kind}-reason`).value.trim() };
      command = kind === "hold" ? "HoldOrder" : "CancelOrder";
      if (!body.reason) {
        error.textContent = kind === "hold" ? "Say why it waits." : "Give a reason: the customer reads it.";
        error.hidden = false;
        return;
      }
    }
    const submit = $(`${kind}-submit`);
    submit.disabled = true;
    const problem = await runCommand(order, command, body);
    submit.disabled = false;
    if (problem) {
      error.textContent = problem;
      error.hidden = false;
    } else {
      dialog.close();
    }
  }

  // ---- notices ------------------------------------------------------------------------------

  let noticeTimer = null;
  function notify(message, kind = "info", { takenBy } = {}) {
    const el = $("notice");
    el.textContent = message;
    el.dataset.kind = kind;
    if (takenBy) el.dataset.takenBy = takenBy;
    else delete el.dataset.takenBy;
    el.hidden = false;
    clearTimeout(noticeTimer);
    if (kind === "ok") noticeTimer = setTimeout(() => { el.hidden = true; }, 15000);
  }

  // ---- order detail -------------------------------------------------------------------------

  async function openDetail(id) {
    state.detailId = id;
    const panel = $("detail");
    panel.hidden = false;
    panel.setAttribute("aria-busy", "true");
    $("detail-title").textContent = "Loading…";
    $("history").replaceChildren();
    const order = await writeSideOrder(id, 0, { force: true });
    if (state.detailId !== id) return;
    panel.removeAttribute("aria-busy");
    if (!order) {
      $("detail-title").textContent = "This order cannot be shown.";
      return;
    }
    renderDetail(order);
    loadHistory(id);
    $("detail-close").focus();
  }

  function renderDetail(order) {
    $("detail").dataset.orderId = order.order_id;
    $("detail-title").textContent = `${order.number} · ${order.item_title}`;
    const facts = [
      ["Status", human(order.status) + (order.stuck ? " (stuck)" : "") + (order.overdue ? " (overdue)" : "")],
      ["Contact", `${order.contact_name} (${order.owner_id}, ${order.channel})`],
      ["Material", `${order.material_code} × ${order.quantity}`],
      ["Promised", order.promised_date || "—"],
      ["Model", order.model ? `${order.model.filename} · ${order.model.format} · ${order.model.triangle_count ?? "?"} triangles` : "—"],
      ["Operator", order.operator_id || "—"],
      order.held_since ? ["On hold", `since ${formatTime(order.held_since)} (${ago(order.held_since)}): ${order.hold_reason}`] : null,
      order.quote ? ["Quote holds", `until ${formatTime(order.quote.valid_until)} (${quoteTerm(order.quote.valid_until)})`] : null,
      order.carrier ? ["Shipping", `${order.carrier} · ${order.tracking_number}`] : null,
      order.rejection_reason ? ["Rejected", order.rejection_reason] : null,
      order.cancellation_reason ? ["Cancelled", order.cancellation_reason] : null,
      ["Updated", formatTime(order.updated_at)],
    ].filter(Boolean);
    $("detail-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", null, k), h("dd", { "data-fact": k.toLowerCase() }, v)]));
    const quote = order.quote;
    $("quote-section").hidden = !quote;
    $("no-quote").hidden = Boolean(quote);
    if (quote) {
      $("quote-lines").replaceChildren(...quote.lines.map((line) => h("tr", { "data-testid": "quote-line", "data-code": line.code },
        h("th", { scope: "row" }, line.label), h("td", { class: "num" }, formatMoney(line.amount_minor, quote.currency)))));
      $("quote-total").textContent = formatMoney(quote.total_minor, quote.currency);
      const f = quote.figures;
      const terms = quote.catalog_version
        ? ` · catalog v${quote.catalog_version}, metal ${formatMoney(quote.metal_price_per_gram_minor, quote.currency)}/g`
        : "";
      $("quote-figures").textContent = f
        ? `${f.mass_g.toFixed(2)} g · ${(f.volume_mm3 / 1000).toFixed(3)} cm³ · ${f.triangle_count} triangles · ${f.bbox_mm.map((x) => x.toFixed(1)).join(" × ")} mm${terms}`
        : "";
    }
    renderWallFigures(quote);
    const previewKey = `${order.order_id}:${(quote && quote.preview_sha256) || order.status}`;
    if (state.previewKey !== previewKey) {
      state.previewKey = previewKey;
      loadPreview(order.order_id, quote && quote.preview_sha256, order.status === "REJECTED");
    }
    const buttons = actionButtons(order, { testidPrefix: "detail-" });
    $("detail-actions").replaceChildren(...(buttons.length ? buttons : [h("span", { class: "muted" }, "Nothing you can do to this order now.")]));
  }

  // ---- the model in 3D (preview.js, three.js) ------------------------------------------------

  const WALL_COLOURS = { thin: "#d62828", near: "#f0a820", sound: "#c8c4ba", unmeasured: "#96a0af" };

  function renderWallFigures(quote) {
    const wall = quote && quote.figures && quote.figures.wall;
    const mm = (x) => (x === null || x === undefined || Number.isNaN(x) ? "—" : `${Number(x).toFixed(2)} mm`);
    const rows = wall ? [
      ["Thinnest wall", mm(wall.minimum_mm)],
      ["1st percentile", mm(wall.p1_mm)],
      [`Below ${wall.min_wall_mm} mm`, `${(wall.share_below * 100).toFixed(2)} % (${wall.area_below_mm2.toFixed(1)} mm²)`],
      ["Analysis", wall.reliable ? "reliable" : `unreliable (${(wall.unreliable_share * 100).toFixed(1)} % of the surface faulty)`],
    ] : [];
    $("wall-figures").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", null, k), h("dd", { "data-figure": k.toLowerCase() }, v)]));
  }

  function renderLegend(extras) {
    const min = Number(extras.min_wall_mm);
    const near = min * Number(extras.near_factor || 1.25);
    const items = Number.isFinite(min) ? [
      ["thin", `under ${min.toFixed(2)} mm: too thin to cast`],
      ["near", `${min.toFixed(2)}–${near.toFixed(2)} mm: close to the minimum`],
      ["sound", `${near.toFixed(2)} mm and more`],
      ["unmeasured", "not measured"],
    ] : [];
    $("preview-legend").replaceChildren(...items.map(([kind, text]) => h("li", { "data-kind": kind },
      h("span", { class: "swatch", style: `background:${WALL_COLOURS[kind]}` }), text)));
  }

  let previewModule = null;

  // `expected`: the preview's sha256 the order's quote names; `rejected`: the order was rejected (a too-thin
  // model has a preview the write side does not name). The MES view may not show it yet: asked again a
  // few times until it does (its ETag is the sha256).
  async function loadPreview(id, expected, rejected) {
    const view = $("preview-view");
    const note = $("preview-note");
    delete view.dataset.ready;
    view.replaceChildren();
    $("preview-legend").replaceChildren();
    note.textContent = "Loading the 3D preview…";
    let response;
    for (let attempt = 0; ; attempt++) {
      try {
        response = await fetch(apiUrl(`/mes/orders/${id}/preview`), {
          headers: { Authorization: `Bearer ${state.token}` }, cache: "no-cache",
        });
      } catch (e) {
        if (state.detailId === id) note.textContent = "Cannot reach the server for the 3D preview.";
        return;
      }
      if (state.detailId !== id) return;
      const behind = expected ? response.headers.get("ETag") !== `"${expected}"` : !response.ok && rejected;
      if (!behind || attempt >= (expected ? 10 : 4)) break;
      await new Promise((resolve) => setTimeout(resolve, 400));
      if (state.detailId !== id) return;
    }
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (e) { /* not JSON */ }
      note.textContent = response.status === 404
        ? "No 3D preview: one is made when the model is quoted or rejected as too thin."
        : describeError(response.status, body);
      return;
    }
    const buffer = await response.arrayBuffer();
    if (state.detailId !== id) return;
    try {
      previewModule = previewModule || await import("./preview.js");
      const extras = await previewModule.showPreview(view, buffer);
      if (state.detailId !== id) return;
      renderLegend(extras);
      note.textContent = "Drag to turn, scroll to zoom.";
      view.dataset.ready = "true";
    } catch (e) {
      if (state.detailId === id) note.textContent = `The 3D preview cannot be shown in this browser: ${e.message}`;
    }
  }

  async function loadHistory(id) {
    try {
      const { data } = await api(`/orders/${id}/history`);
      if (state.detailId !== id) return;
      $("history").replaceChildren(...data.map((entry) => h("li", { "data-testid": "history-entry", "data-event": entry.event },
        h("span", { class: "event" }, entry.event),
        h("time", { datetime: entry.timestamp }, formatTime(entry.timestamp)),
        h("span", { class: "muted" }, `by ${entry.actor_role} ${entry.actor_id}`),
        summary(entry.data) ? h("div", { class: "small" }, summary(entry.data)) : null)));
    } catch (e) {
      if (state.detailId === id) $("history").replaceChildren(h("li", { class: "error" }, e.message));
    }
  }

  function summary(data) {
    const parts = [];
    for (const [key, value] of Object.entries(data || {})) {
      if (value === null || value === undefined || value === "") continue;
      if (key === "quote" && value && value.total_minor !== undefined) {
        parts.push(`quote ${formatMoney(value.total_minor, value.currency)}`);
      } else if (key === "model" && value && value.filename) {
        parts.push(`model ${value.filename}`);
      } else {
        const text = typeof value === "object" ? JSON.stringify(value) : String(value);
        parts.push(`${key.replaceAll("_", " ")} ${text.length > 120 ? text.slice(0, 117) + "…" : text}`);
      }
    }
    return parts.join(" · ");
  }

  function closeDetail() {
    state.detailId = null;
    state.previewKey = null;
    if (previewModule) previewModule.disposePreview();
    $("detail").hidden = true;
  }

  // ---- stats and chart ----------------------------------------------------------------------

  function renderStats(stats) {
    const counts = stats.counts || {};
    const waits = stats.approved_wait_seconds || {};
    const entries = [
      ["Awaiting approval", counts.PRICE_CALCULATED, "PRICE_CALCULATED"],
      ["Approved, waiting", counts.MANUFACTURING_APPROVED, "MANUFACTURING_APPROVED"],
      ["In manufacturing", counts.MANUFACTURING_STARTED, "MANUFACTURING_STARTED"],
      ["Completed", counts.MANUFACTURING_COMPLETED, "MANUFACTURING_COMPLETED"],
      ["Packaging", counts.PACKAGING, "PACKAGING"],
      ["Stuck", stats.stuck_total, null, "stuck"],
      ["Overdue", stats.overdue_total, null, "overdue"],
      ["On hold", Object.values(stats.on_hold || {}).reduce((a, b) => a + b, 0), null, "held"],
    ];
    const nodes = [];
    for (const [label, value, status, flag] of entries) {
      const apply = () => {
        selectTabQuietly("all");
        setFilters({
          sort: "approved", status: status || "", stuck: flag === "stuck", overdue: flag === "overdue",
          held: flag === "held" ? "true" : "",
        });
        reload({ fresh: true });
      };
      nodes.push(h("div", { class: "stat" + (flag && value ? " alarm" : "") },
        h("dt", null, label),
        h("dd", { "data-stat": status || flag }, h("button", { type: "button", class: "link", onclick: apply, "aria-label": `Show ${label.toLowerCase()} orders` }, value ?? 0))));
    }
    nodes.push(h("div", { class: "stat" }, h("dt", null, "Wait p50 / p90"),
      h("dd", { "data-stat": "wait" }, `${formatDuration(waits.p50)} / ${formatDuration(waits.p90)}`)));
    const held = stats.approved_held_seconds || {};
    nodes.push(h("div", { class: "stat" }, h("dt", null, "On hold p50 / max"),
      h("dd", { "data-stat": "held-wait" }, held.n ? `${formatDuration(held.p50)} / ${formatDuration(held.max)}` : "—")));
    $("stats").replaceChildren(...nodes);
    drawChart(stats.approved_waiting_series || []);
    state.statsLast = Date.now();
  }

  function selectTabQuietly(key) {
    if (!TABS[key].roles.includes(state.actor.role)) return;
    state.tab = key;
    for (const button of $("tabs").querySelectorAll("button")) button.setAttribute("aria-pressed", String(button.dataset.tab === key));
    $("list-title").textContent = TABS[key].label;
  }

  async function refreshStats() {
    try {
      renderStats((await api("/mes/stats")).data);
    } catch (e) { /* the board stays as it was; the table reports errors */ }
  }

  function scheduleStats() {
    if (state.statsTimer) return;
    const wait = Math.max(300, 2000 - (Date.now() - state.statsLast));
    state.statsTimer = setTimeout(() => { state.statsTimer = null; refreshStats(); }, wait);
  }

  function drawChart(series) {
    const box = $("chart");
    const W = 480, H = 130, left = 30, right = 8, top = 10, bottom = 22;
    const points = series.map((p) => ({ at: new Date(p.at), waiting: Number(p.waiting) || 0 }));
    const max = Math.max(1, ...points.map((p) => p.waiting));
    const now = points.length ? points[points.length - 1].waiting : 0;
    const svg = s("svg", {
      viewBox: `0 0 ${W} ${H}`, role: "img", class: "waiting-chart", "data-testid": "waiting-svg",
      "aria-label": `Orders waiting in MANUFACTURING_APPROVED: ${now} now, at most ${max} in the last 24 hours`,
    });
    svg.append(s("title", {}, `Orders waiting in MANUFACTURING_APPROVED (now ${now})`));
    const plotW = W - left - right, plotH = H - top - bottom;
    const y = (v) => top + plotH - (v / max) * plotH;
    for (const v of [0, max]) {
      svg.append(s("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(s("text", { x: left - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, v));
    }
    const n = Math.max(1, points.length);
    const step = plotW / n;
    points.forEach((p, i) => {
      const x = left + i * step;
      const isNow = i === points.length - 1;
      const bar = s("rect", {
        x: x + 1, y: y(p.waiting), width: Math.max(1, step - 2), height: Math.max(0, top + plotH - y(p.waiting)),
        class: isNow ? "bar now" : "bar", "data-waiting": p.waiting,
      });
      bar.append(s("title", {}, `${isNow ? "now" : formatTime(p.at.toISOString())}: ${p.waiting} waiting`));
      svg.append(bar);
      if (i % 6 === 0 || isNow) {
        const label = isNow ? "now" : `${pad(p.at.getHours())}:00`;
        svg.append(s("text", { x: x + step / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, label));
      }
    });
    box.replaceChildren(svg);
  }

  // ---- live updates -------------------------------------------------------------------------

  function setLive(text, on) {
    const el = $("live-status");
    el.textContent = text;
    el.classList.toggle("on", on);
    el.classList.toggle("off", !on);
  }

  function stopStream() {
    if (state.stream) state.stream.abort();
    state.stream = null;
    setLive("offline", false);
  }

  // EventSource cannot send a bearer token, so read the SSE stream with fetch and parse it here.
  async function startStream() {
    stopStream();
    const controller = new AbortController();
    state.stream = controller;
    const token = state.token;
    let backoff = 1000;
    let connectedBefore = false;
    while (!controller.signal.aborted && token === state.token) {
      try {
        const response = await fetch(apiUrl("/mes/stream"), {
          headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" }, cache: "no-store",
          signal: controller.signal,
        });
        if (response.status === 401) {
          let body = null;
          try { body = await response.json(); } catch (e) { /* no body */ }
          signOut(`Signed out: ${describeError(401, body)}`);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = (buffer + value).replace(/\r\n|\r(?=.)/g, "\n");
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const message = parseEvent(block);
            if (!message) continue;
            if (message.event === "ready") {
              setLive("live", true);
              backoff = 1000;
              if (connectedBefore) scheduleReload(0); // changes may have been missed while away
              connectedBefore = true;
            } else if (message.event === "change") {
              onChange(message.data);
            }
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      if (controller.signal.aborted || token !== state.token) return;
      setLive("reconnecting…", false);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 15000);
    }
  }

  function parseEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length && event === "message") return null;
    return { event, data: data.join("\n") };
  }

  function onChange(raw) {
    let change;
    try { change = JSON.parse(raw); } catch (e) { return; }
    const position = Number(change.position) || 0;
    if (change.truncated) {
      state.orders.clear();
      scheduleReload(0);
    } else {
      scheduleReload(position);
      for (const o of change.orders || []) {
        if (o.order_id === state.detailId) {
          writeSideOrder(o.order_id, o.version).then((order) => {
            if (order && state.detailId === o.order_id) { renderDetail(order); loadHistory(o.order_id); }
          });
        }
      }
    }
    scheduleStats();
  }

  // ---- wiring -------------------------------------------------------------------------------

  function init() {
    $("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value); });
    $("signout").addEventListener("click", () => signOut(""));
    $("filters").addEventListener("submit", (e) => { e.preventDefault(); reload({ fresh: true }); });
    $("reset").addEventListener("click", () => { setFilters(presetOf(state.tab)); reload({ fresh: true }); });
    for (const id of ["f-status", "f-channel", "f-overdue", "f-stuck", "f-sort", "f-material"]) {
      $(id).addEventListener("change", () => reload({ fresh: true }));
    }
    let typing = null;
    $("f-q").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => reload({ fresh: true }), 250);
    });
    $("more").addEventListener("click", more);
    $("take-next").addEventListener("click", takeNext);
    $("detail-close").addEventListener("click", closeDetail);
    for (const kind of ["ship", "cancel", "hold"]) {
      $(`${kind}-form`).addEventListener("submit", (e) => submitDialog(kind, e));
      $(`${kind}-dialog`).querySelector("[data-close]").addEventListener("click", () => $(`${kind}-dialog`).close());
    }
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("detail").hidden && !document.querySelector("dialog[open]")) closeDetail();
    });
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved, { quiet: true });
  }

  init();
  window.alexandriteConsole = Object.freeze({ formatMoney }); // for the browser tests
})();
