// Live events over the WebSocket; pages subscribe while shown. Reconnects with backoff.
import { getKey } from "./api.js";

const listeners = new Set();
let socket = null;
let retry = 0;
let retryTimer = null;

export function onLive(fn) { listeners.add(fn); return () => listeners.delete(fn); }

function badge(on) {
  const b = document.getElementById("live");
  b.textContent = on ? "live" : "offline";
  b.classList.toggle("on", on);
  b.title = on ? "Live updates are on" : "Live updates are off; reconnecting";
}

export function openLive() {
  clearTimeout(retryTimer);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  const key = getKey();
  if (!key) { badge(false); return; }
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/v1/events/ws?api_key=${encodeURIComponent(key)}`);
  socket = ws;
  ws.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (ev.event === "ready") { retry = 0; badge(true); }
    for (const fn of listeners) fn(ev);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null; badge(false);
    retry = Math.min(retry + 1, 5);
    retryTimer = setTimeout(openLive, 1000 * Math.min(30, 2 ** retry));
  };
}

export function closeLive() {
  clearTimeout(retryTimer);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  badge(false);
}
