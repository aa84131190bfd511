// The REST API with the key kept in local storage: the dashboard can do what the key's role
// allows and nothing more.

const KEY = "broadcaster_key";
export const emulatorMode = document.body.dataset.emulator === "true";

export function getKey() { return localStorage.getItem(KEY) || ""; }
export function setKey(k) { if (k) localStorage.setItem(KEY, k); else localStorage.removeItem(KEY); }

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

/** `body`: JSON, or a FormData / Blob sent as is. */
export async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + getKey() };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body instanceof Blob) { payload = body; headers["Content-Type"] = body.type || "application/octet-stream"; }
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  const r = await fetch(path, { method, headers, body: payload });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!r.ok) {
    const err = data && data.error;
    throw new ApiError(r.status, err && err.code, (err && err.message) || `${r.status} ${r.statusText}`);
  }
  return data;
}

const blobs = new Map();
/** An object URL for an authenticated download (media in chats), fetched once per path. */
export function blobUrl(path) {
  if (!blobs.has(path)) {
    blobs.set(path, fetch(path, { headers: { Authorization: "Bearer " + getKey() } }).then(async (r) => {
      if (!r.ok) throw new ApiError(r.status, null, `download failed (${r.status})`);
      return URL.createObjectURL(await r.blob());
    }).catch((e) => { blobs.delete(path); throw e; }));
  }
  return blobs.get(path);
}

export async function download(path, fileName) {
  const url = await blobUrl(path);
  const a = document.createElement("a");
  a.href = url; a.download = fileName; document.body.append(a); a.click(); a.remove();
}
