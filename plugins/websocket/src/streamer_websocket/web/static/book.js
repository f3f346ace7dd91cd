// The market view's order book panel: the chosen symbol's book rebuilt from the sink's `book`
// items the way streamer.book.OrderBook does it: a snapshot replaces the book whole, a delta
// must follow the last update_id by one, else the book is dropped until the next snapshot,
// so a wrong book is never shown. Levels are keyed by the price's number; price and size
// strings are shown exactly as sent. Only the chosen symbol's book is held (app.js).
"use strict";
const StreamerBook = (function () {
  const SHOWN = 10;         // levels a side in the panel
  const MAX_LEVELS = 1000;  // a side holds at most this many (Bybit's deepest book)

  // Set the [price, size] levels into side (a Map price number -> [price, size]);
  // size 0 deletes. False when a level is no number or the side grows past MAX_LEVELS.
  function setLevels(side, levels) {
    if (!Array.isArray(levels)) return false;
    for (const level of levels) {
      const price = Number(level[0]);
      const size = Number(level[1]);
      if (!(price > 0 && Number.isFinite(price)) || !(size >= 0 && Number.isFinite(size))) {
        return false;
      }
      if (size === 0) side.delete(price);
      else side.set(price, [String(level[0]), String(level[1])]);
    }
    return side.size <= MAX_LEVELS;
  }

  // The n best levels of side: bids highest first, asks lowest first.
  function best(side, n, bids) {
    const keys = [...side.keys()].sort((a, b) => (bids ? b - a : a - b));
    return keys.slice(0, n).map((k) => side.get(k));
  }

  // The spread ask - bid as text, with as many decimals as the more precise price.
  function spread(bid, ask) {
    const decimals = (p) => (p.includes(".") ? p.length - p.indexOf(".") - 1 : 0);
    return (Number(ask) - Number(bid)).toFixed(Math.max(decimals(bid), decimals(ask)));
  }

  class Book {
    constructor() { this.reset(); }

    // Forget the book: nothing seen of it ("none").
    reset() {
      this.bids = new Map();
      this.asks = new Map();
      this.updateId = null;
      this.ts = null;
      this.state = "none";
    }

    // Drop the book until the next snapshot ("waiting").
    drop() {
      this.reset();
      this.state = "waiting";
    }

    // Apply one wire item; true when what the panel shows changed.
    apply(item) {
      if (item.kind === "snapshot") {
        this.bids = new Map();
        this.asks = new Map();
      } else if (this.updateId === null) {
        return false;  // no snapshot yet: a delta has nothing to follow
      } else if (item.update_id !== this.updateId + 1) {
        this.drop();
        return true;
      }
      if (!setLevels(this.bids, item.bids) || !setLevels(this.asks, item.asks)) {
        this.drop();
        return true;
      }
      this.updateId = item.update_id;
      this.ts = item.ts;
      this.state = "live";
      return true;
    }

    // Draw the panel (ids in index.html) for symbol (the picker's "channel symbol").
    draw(symbol) {
      let bids = best(this.bids, SHOWN, true);
      let asks = best(this.asks, SHOWN, false);
      if (bids.length && asks.length && Number(bids[0][0]) >= Number(asks[0][0])) {
        this.drop();  // a crossed book is a wrong one
        bids = asks = [];
      }
      const panel = document.getElementById("book");
      panel.dataset.state = this.state;
      panel.dataset.symbol = symbol || "";
      panel.dataset.updateId = this.updateId === null ? "" : String(this.updateId);
      const note = document.getElementById("book-note");
      if (this.state === "none") note.textContent = "No book streamed for this symbol";
      else if (this.state === "waiting") note.textContent = "Book out of step: waiting for a snapshot";
      else note.textContent = `update ${this.updateId}, ${new Date(this.ts).toISOString().slice(11, 23)}`;
      const bid = bids.length ? bids[0][0] : null;
      const ask = asks.length ? asks[0][0] : null;
      document.getElementById("book-bid").textContent = bid ?? "-";
      document.getElementById("book-ask").textContent = ask ?? "-";
      document.getElementById("book-spread").textContent =
        bid !== null && ask !== null ? spread(bid, ask) : "-";
      const rows = [];
      for (let i = 0; i < Math.max(bids.length, asks.length); i += 1) {
        const row = document.createElement("tr");
        const [bp, bs] = bids[i] || ["", ""];
        const [ap, as] = asks[i] || ["", ""];
        for (const [text, cls] of [[bs, "num"], [bp, "num Buy"], [ap, "num Sell"], [as, "num"]]) {
          const td = document.createElement("td");
          td.textContent = text;
          td.className = cls;
          row.appendChild(td);
        }
        rows.push(row);
      }
      document.getElementById("book-levels").tBodies[0].replaceChildren(...rows);
    }
  }

  return { Book, SHOWN };
})();
