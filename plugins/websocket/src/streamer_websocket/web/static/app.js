// The web view: a client of the sink's own WebSocket protocol (first-message login, subscribe,
// {"op": "status", "push": true}: the server pushes the status once a second). Credentials
// live in this page's memory only: never in a URL or storage.
// Views are redrawn at most 10 times a second, whatever the rate of the data.
"use strict";
(function () {
  const FRAME_MS = 100;
  const MAX_CANDLES = 2000;
  const MAX_TRADES = 50;
  const RETRY_MAX_MS = 10000;
  // The ticker fields onTicker reads: the sink sends only these (and the symbol, ts).
  const TICKER_FIELDS = ["bid1Price", "ask1Price", "lastPrice"];
  // What drawMarket shows of a trade (the server adds its symbol "s" and time "T").
  const TRADE_FIELDS = ["S", "p", "v"];
  const $ = (id) => document.getElementById(id);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const wsPath = meta("streamer-ws-path");
  const authOn = meta("streamer-auth") === "on";

  let creds = authOn ? null : { user: "", key: "" };
  let ws = null;
  let live = false;
  let retries = 0;
  const dirty = { status: false, market: false, pickers: false };
  // Redraws of each view so far, also shown as its data-redraws (tests read it).
  const redraws = { market: 0, status: 0 };

  // -- market state --------------------------------------------------------------------
  const quotes = new Map();     // "channel symbol" -> {bid, ask, last}
  const known = new Set();      // "channel symbol" seen in tickers or klines
  let selected = null;          // "channel symbol"
  let interval = null;          // ms, as a string
  let candles = new Map();      // interval -> Map(timestamp -> [t, o, h, l, c])
  let trades = [];
  const book = new StreamerBook.Book();  // the chosen symbol's order book (book.js)
  let drawnInterval = null;
  let drawnCount = -1;

  // -- status state --------------------------------------------------------------------
  let status = null;
  let previous = null;

  const chart = LightweightCharts.createChart($("chart"), {
    autoSize: true,
    // The logo would bring an inline <style>, which the CSP refuses: the footer credits it.
    layout: { background: { color: "#101418" }, textColor: "#dde3ea", attributionLogo: false },
    grid: { vertLines: { color: "#1d242c" }, horzLines: { color: "#1d242c" } },
    timeScale: { timeVisible: true, secondsVisible: true },
  });
  const series = chart.addCandlestickSeries();

  function send(message) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
  }

  function setConn(state, text) {
    $("conn").dataset.state = state;
    $("conn").textContent = text || state;
  }

  function showLogin(error) {
    $("views").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = error || "";
    $("login-key").value = "";
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${wsPath}`);
    ws = socket;
    live = false;
    setConn("connecting");
    socket.onopen = () => socket.send(JSON.stringify({ user: creds.user, key: creds.key }));
    socket.onmessage = (event) => onMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      if (ws !== socket) return;
      ws = null;
      live = false;
      if (event.code === 4401 || event.code === 4429) {
        creds = authOn ? null : creds;
        setConn("closed", "logged out");
        showLogin(event.code === 4429 ? "Too many failed logins: try again later"
          : "Wrong user or key");
        return;
      }
      setConn("closed", "reconnecting");
      const delay = Math.min(RETRY_MAX_MS, 500 * 2 ** retries);
      retries += 1;
      setTimeout(connect, delay);
    };
  }

  function subscribeSelected() {
    if (!selected) return;
    const [channel, symbol] = selected.split(" ");
    send({ op: "unsubscribe", args: [
      { data_type: "klines" }, { data_type: "trades" }, { data_type: "book" }] });
    // The answer to the book's subscribe starts with its book whole (when the sink holds
    // one), then its deltas follow.
    send({ op: "subscribe", args: [
      { channel, data_type: "klines", symbols: [symbol] },
      { channel, data_type: "trades", symbols: [symbol], fields: TRADE_FIELDS },
      { channel, data_type: "book", symbols: [symbol] },
    ] });
  }

  function select(key) {
    selected = key;
    candles = new Map();
    trades = [];
    book.reset();
    interval = null;
    drawnInterval = null;
    $("symbol").value = key;
    subscribeSelected();
    dirty.market = dirty.pickers = true;
  }

  function onAuthenticated() {
    live = true;
    retries = 0;
    setConn("live");
    $("login").hidden = true;
    $("views").hidden = false;
    book.reset();  // a new connection: the book comes whole again before its deltas
    dirty.market = true;
    // Everything due in one message burst at most every batch_interval (0.2 s by default:
    // 5 updates a second; the page redraws at most 10 times a second), with only the
    // latest ticker of each symbol in it (the page shows the latest).
    send({ op: "batch", latest: ["ticker"] });
    // Tickers of every symbol (quotes, the picker), only the fields onTicker reads (and the
    // symbol); klines of every symbol until one is chosen (the picker), then only the
    // chosen symbol's klines, trades and book. (The books of every symbol come once,
    // unasked, in the snapshot sent on connect.)
    send({ op: "subscribe", args: [{ data_type: "ticker", fields: TICKER_FIELDS }] });
    if (selected) subscribeSelected();
    else send({ op: "subscribe", args: [{ data_type: "klines" }] });
    // The status now, then pushed by the server once a second (no request per second).
    send({ op: "status", push: true });
  }

  function onMessage(msg) {
    if (msg.status === "authenticated") { if (!live) onAuthenticated(); return; }
    if (msg.error && !live) return;  // the close code that follows says why
    if (msg.op === "status" && msg.data) {
      previous = status;
      status = msg.data;
      dirty.status = true;
      return;
    }
    if (!msg.data_type || !Array.isArray(msg.data)) return;
    const channel = msg.channel;
    for (const item of msg.data) {
      const key = `${channel} ${item.symbol || item.s}`;
      if (msg.data_type === "ticker") onTicker(key, item);
      else if (msg.data_type === "klines") onKline(key, item);
      else if (msg.data_type === "trades" && key === selected) onTrade(item);
      else if (msg.data_type === "book") onBook(key, item);
    }
  }

  function discover(key) {
    if (known.has(key)) return;
    known.add(key);
    dirty.pickers = true;
    if (!selected) select(key);
  }

  function onTicker(key, item) {
    const quote = quotes.get(key) || {};
    if (item.bid1Price !== undefined) quote.bid = item.bid1Price;
    if (item.ask1Price !== undefined) quote.ask = item.ask1Price;
    if (item.lastPrice !== undefined) quote.last = item.lastPrice;
    quotes.set(key, quote);
    discover(key);
    if (key === selected) dirty.market = true;
  }

  function onKline(key, item) {
    discover(key);
    if (key !== selected) return;
    const name = String(item.interval);
    let table = candles.get(name);
    if (!table) {
      table = new Map();
      candles.set(name, table);
      dirty.pickers = true;
      if (interval === null) interval = name;
    }
    table.set(item.timestamp, [item.timestamp / 1000, item.open, item.high, item.low, item.close]);
    if (table.size > MAX_CANDLES) table.delete(Math.min(...table.keys()));
    dirty.market = true;
  }

  function onBook(key, item) {
    discover(key);
    if (key === selected && book.apply(item)) dirty.market = true;
  }

  function onTrade(item) {
    trades.unshift(item);
    if (trades.length > MAX_TRADES) trades.length = MAX_TRADES;
    dirty.market = true;
  }

  // -- drawing -------------------------------------------------------------------------
  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function intervalName(ms) {
    const s = Number(ms) / 1000;
    if (s % 86400 === 0) return `${s / 86400}d`;
    if (s % 3600 === 0) return `${s / 3600}h`;
    if (s % 60 === 0) return `${s / 60}m`;
    return `${s}s`;
  }

  function fillSelect(select, values, current, label) {
    const wanted = values.join("\n");
    if (select.dataset.values !== wanted) {
      select.replaceChildren(...values.map((v) => {
        const option = document.createElement("option");
        option.value = v;
        option.textContent = label(v);
        return option;
      }));
      select.dataset.values = wanted;
    }
    if (current !== null) select.value = current;
  }

  function drawPickers() {
    fillSelect($("symbol"), [...known].sort(), selected, (v) => v);
    const names = [...candles.keys()].sort((a, b) => Number(a) - Number(b));
    fillSelect($("interval"), names, interval, intervalName);
  }

  function drawMarket() {
    const quote = quotes.get(selected) || {};
    $("bid").textContent = quote.bid ?? "-";
    $("ask").textContent = quote.ask ?? "-";
    $("last").textContent = quote.last ?? (trades[0] ? trades[0].p : "-");
    const table = interval === null ? null : candles.get(interval);
    const rows = table ? [...table.values()].sort((a, b) => a[0] - b[0]) : [];
    const data = rows.map(([time, open, high, low, close]) => ({ time, open, high, low, close }));
    if (interval !== drawnInterval || data.length !== drawnCount) series.setData(data);
    else if (data.length) series.update(data[data.length - 1]);
    drawnInterval = interval;
    drawnCount = data.length;
    const box = $("chart");
    box.dataset.candles = String(data.length);
    box.dataset.interval = interval === null ? "" : interval;
    box.dataset.symbol = selected || "";
    book.draw(selected);
    const body = $("trades").tBodies[0];
    body.replaceChildren(...trades.map((t) => {
      const row = document.createElement("tr");
      cell(row, new Date(t.T).toISOString().slice(11, 23));
      cell(row, t.S, t.S);
      cell(row, t.p, "num");
      cell(row, t.v, "num");
      return row;
    }));
  }

  function sample(node, name, labels) {
    let total = null;
    for (const s of node.samples) {
      if (s.name !== name) continue;
      if (labels && Object.entries(labels).some(([k, v]) => s.labels[k] !== v)) continue;
      total = (total || 0) + s.value;
    }
    return total;
  }

  function rate(node, field) {
    if (!previous) return "-";
    const before = previous.nodes.find((n) => n.name === node.name);
    const seconds = (status.time_ms - previous.time_ms) / 1000;
    if (!before || seconds <= 0) return "-";
    return ((field(node) - field(before)) / seconds).toFixed(1);
  }

  function age(seconds) {
    return seconds === null || seconds === undefined ? "-" : `${seconds.toFixed(1)} s ago`;
  }

  function nodeState(node) {
    if (!node.parts.length) return ["ready", "ready"];
    const down = node.parts.filter((p) => !p.ready);
    if (!down.length) return node.kind === "source" ? ["connected", "connected"] : ["ready", "ready"];
    return ["down", down.map((p) => `${p.part}: ${p.reason || "not ready"}`).join("; ")];
  }

  function drawStatus() {
    const p = status.process;
    let cpu = "-";
    if (previous) {
      const seconds = (status.time_ms - previous.time_ms) / 1000;
      if (seconds > 0) cpu = `${(100 * (p.cpu_s - previous.process.cpu_s) / seconds).toFixed(1)} %`;
    }
    const facts = [["Uptime", `${Math.floor(p.uptime_s)} s`],
      ["RSS", p.rss_bytes === null ? "-" : `${(p.rss_bytes / 1048576).toFixed(1)} MiB`],
      ["CPU", cpu], ["CPU time", `${p.cpu_s.toFixed(1)} s`]];
    $("process").replaceChildren(...facts.flatMap(([k, v]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = v;
      dd.dataset.fact = k.toLowerCase();
      return [dt, dd];
    }));
    const sources = [];
    const sinks = [];
    for (const node of status.nodes) {
      const [state, text] = nodeState(node);
      const row = document.createElement("tr");
      row.dataset.node = node.name;
      row.dataset.state = state;
      cell(row, `${node.name} (${node.type})`);
      cell(row, text).dataset.state = state;
      if (node.kind === "source") {
        const topics = sample(node, "subscribed_topics");
        const all = sample(node, "topics");
        cell(row, topics === null ? "-" : `${topics} / ${all}`, "num");
        cell(row, rate(node, (n) => n.messages), "num");
        const ages = node.parts.map((x) => x.last_data_age_s).filter((x) => x !== null);
        cell(row, age(ages.length ? Math.min(...ages) : null));
        cell(row, String(sample(node, "reconnects") ?? 0), "num");
        cell(row, String(node.counters.trade_gaps || 0), "num");
        sources.push(row);
        for (const part of node.parts) {
          const sub = document.createElement("tr");
          sub.className = "part";
          sub.dataset.part = part.part;
          cell(sub, part.part);
          const ok = part.ready ? "connected" : "down";
          cell(sub, part.ready ? "connected" : part.reason || "not ready").dataset.state = ok;
          cell(sub, "");
          cell(sub, "");
          const last = sample(node, "last_message_age_seconds", { connection: part.part });
          cell(sub, age(last ?? part.last_data_age_s));
          cell(sub, "");
          cell(sub, "");
          sources.push(sub);
        }
      } else if (node.kind === "sink") {
        cell(row, rate(node, (n) => n.events), "num");
        cell(row, String(node.counters.inbox_dropped_events || 0), "num");
        cell(row, String(node.lost), "num");
        cell(row, String(node.counters.stalls || 0), "num");
        cell(row, node.inbox ? `${node.inbox.depth} / ${node.inbox.capacity}` : "-", "num");
        sinks.push(row);
      }
    }
    $("sources").tBodies[0].replaceChildren(...sources);
    $("sinks").tBodies[0].replaceChildren(...sinks);
  }

  function redrawn(view) {
    redraws[view] += 1;
    $(`${view}-view`).dataset.redraws = String(redraws[view]);
  }

  function frame() {
    if (dirty.pickers) { dirty.pickers = false; drawPickers(); }
    if (dirty.market && !$("market-view").hidden) {
      dirty.market = false;
      drawMarket();
      redrawn("market");
    }
    if (dirty.status && status && !$("status-view").hidden) {
      dirty.status = false;
      drawStatus();
      redrawn("status");
    }
  }

  function show(view) {
    const market = view === "market";
    $("market-view").hidden = !market;
    $("status-view").hidden = market;
    $("tab-market").setAttribute("aria-pressed", String(market));
    $("tab-status").setAttribute("aria-pressed", String(!market));
    dirty[view] = true;
  }

  $("tab-status").addEventListener("click", () => show("status"));
  $("tab-market").addEventListener("click", () => show("market"));
  $("symbol").addEventListener("change", (e) => select(e.target.value));
  $("interval").addEventListener("change", (e) => { interval = e.target.value; dirty.market = true; });
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    creds = { user: $("login-user").value, key: $("login-key").value };
    $("login-error").textContent = "";
    connect();
  });
  setInterval(frame, FRAME_MS);
  if (creds) connect();
  else showLogin("");
})();
