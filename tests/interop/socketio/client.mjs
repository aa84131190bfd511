// A Socket.IO client as existing front-ends use it (npm socket.io-client), driven by JSON lines.
//
//   node client.mjs <url> [handshake-api-key]
//
// stdout: one JSON object per line for everything the client sees:
//   {"event":"connect","id":…}  {"event":"connect_error","message":…}  {"event":"disconnect","reason":…}
//   {"event":<server event>,"data":<first argument>}
// stdin: one JSON object per line, {"emit":<event>,"data":<payload>}, emitted as-is.
// The process exits when stdin closes.
import { io } from 'socket.io-client';
import { createInterface } from 'node:readline';

const [url, apiKey] = process.argv.slice(2);
if (!url) {
  process.stderr.write('usage: node client.mjs <url> [api-key]\n');
  process.exit(2);
}
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const socket = io(url, {
  path: '/socket.io/',
  reconnection: false,
  ...(apiKey ? { auth: { apiKey } } : {}),
});
socket.on('connect', () => out({ event: 'connect', id: socket.id }));
socket.on('connect_error', (err) => out({ event: 'connect_error', message: String(err && err.message) }));
socket.on('disconnect', (reason) => out({ event: 'disconnect', reason }));
socket.onAny((event, data) => out({ event, data: data === undefined ? null : data }));

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (e) {
    out({ event: 'client_error', message: `bad command: ${e.message}` });
    return;
  }
  socket.emit(cmd.emit, cmd.data);
});
lines.on('close', () => {
  socket.close();
  process.exit(0);
});
