#!/usr/bin/env node
// Baileys as a scriptable PEER for tests of our own server: JSON lines out, JSON lines in.
//   node baileys-peer.mjs --url ws://127.0.0.1:PORT/ws/chat --auth DIR [--root-pub HEX]
//                         [--pair-code PHONE] [--log LEVEL] [--sw-js URL | --wa-version X.Y.Z]
// stdout events (one JSON object per line):
//   {"event":"version","version":"2.3000.N","source":"fetchLatestWaWebVersion"}   (with --sw-js, first)
//   {"event":"qr","qr":"https://wa.me/settings/linked_devices#ref,noiseB64,identityB64,advB64,platform"}
//   {"event":"pairing-code","code":"ABCD1234"}          (with --pair-code, once the socket is up)
//   {"event":"connection","connection":"connecting|open|close","statusCode":515,...}
//   {"event":"restart"}                               (after statusCode 515, a new socket with the saved creds)
//   {"event":"creds","me":{...}}                      (after pairing / login)
//   {"event":"message","id":..,"from":..,"fromAlt":..,"participant":..,"fromMe":false,"kind":"conversation","text":..,"media":{..},"reaction":{"text":..,"key":{..}}}
//   {"event":"receipt","update":{...}}  {"event":"sent","id":..,"to":..}  {"event":"error","error":".."}
// stdin commands (one JSON object per line):
//   {"cmd":"send","to":"15557654321@s.whatsapp.net","text":"hi"}
//   {"cmd":"send_image","to":"..","b64":"..","caption":".."}   {"cmd":"download","id":".."}
//   {"cmd":"group_metadata","jid":".."}   {"cmd":"logout"}   {"cmd":"quit"}
//   {"cmd":"send_message","to":"..","content":{..},"quote":"<id>"}  any Baileys AnyMessageContent, where
//     {"b64":".."} values become Buffers (media), "react":{"text":"👍","to":"<id>"}, "edit":"<id>" and
//     "delete":"<id>" name a message this peer sent or received by id (its key is looked up).
// Message events also carry "quoted" (contextInfo.stanzaId), "protocol" ({type,id,text} of an
//   edit/revoke), "media" ({kind,mimetype,fileLength,ptt,fileName,caption}) for every media kind,
//   "location", "contact" ({displayName,vcard}) and "poll" ({name,options,selectable,hasSecret}).
// Other events: "receipt" (messages.update and message-receipt.update), "presence"
//   (presence.update: typing and recording).
// --auth DIR keeps creds + Signal keys (Baileys' useMultiFileAuthState), so a second run logs in without QR.
// --root-pub: 32-byte hex Curve25519 key Baileys should treat as WhatsApp's noise root (WA_CERT_DETAILS.PUBLIC_KEY).
// --sw-js URL: the version comes the way Baileys users get it: `const { version } = await
//   fetchLatestWaWebVersion()`, then `makeWASocket({ version })`. Baileys' function always asks for
//   https://web.whatsapp.com/sw.js and hands its options to fetch(); this one request goes to URL
//   instead (an emulator's sw.js) through fetch's `dispatcher` option, as a user behind a mirror or
//   proxy passes one. A failed fetch (Baileys then falls back to the version it ships) exits 3.
// --wa-version X.Y.Z: that version instead (Baileys' `version` option, as given by a user who pins
//   one). With neither, Baileys reports the version it ships (7.0.0-rc14: 2.3000.1043857760), which
//   a server that retired it refuses with 405.
// Media: Baileys uploads to the media_conn host and downloads from the message's URL host, both
//   over https with normal certificate checks. Against an emulator, start node with
//   NODE_EXTRA_CA_CERTS=<the emulator's test CA, PEM> so that certificate is trusted. Baileys
//   itself is not modified and, but for --sw-js's one version request, nothing here redirects
//   its traffic.
import { createInterface } from 'readline';
import { silentLogger } from './lib/mem-keys.mjs';

const B = await import('@whiskeysockets/baileys');
const argv = process.argv.slice(2);
const opt = (name, def) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : def; };
const url = opt('--url', process.env.WA_URL);
const authDir = opt('--auth', process.env.WA_AUTH_DIR || './.baileys-auth');
const rootPub = opt('--root-pub', process.env.WA_ROOT_PUB);
const pairPhone = opt('--pair-code');
const level = opt('--log', process.env.LOG);
const waVersionArg = opt('--wa-version');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const swJs = opt('--sw-js');
if (!url) { console.error('--url is required'); process.exit(2); }
let waVersion;
if (waVersionArg !== undefined) {
  waVersion = waVersionArg.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : NaN));
  if (waVersion.length !== 3 || waVersion.some((n) => !Number.isSafeInteger(n))) {
    console.error('--wa-version must be three dot-separated numbers such as 2.3000.1045649367');
    process.exit(2);
  }
} else if (swJs !== undefined) {
  // Node's fetch (undici) keeps its global dispatcher under this documented, cross-version key
  // (set when fetch first runs, so it is read at dispatch time); the request keeps its path
  // (/sw.js) and headers, only its origin changes.
  const key = Symbol.for('undici.globalDispatcher.1');
  const origin = new URL(swJs).origin;
  const dispatcher = { dispatch: (o, handler) => globalThis[key].dispatch({ ...o, origin }, handler) };
  const fetched = await B.fetchLatestWaWebVersion({ dispatcher });
  if (!fetched.isLatest) {
    console.error('--sw-js: fetchLatestWaWebVersion failed:', fetched.error?.message ?? fetched.error);
    process.exit(3);
  }
  waVersion = fetched.version;
  out({ event: 'version', version: waVersion.join('.'), source: 'fetchLatestWaWebVersion' });
}
if (rootPub) B.WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(rootPub, 'hex');
const logger = level ? (await import('pino')).default({ level }, process.stderr) : silentLogger;

const { state, saveCreds } = await B.useMultiFileAuthState(authDir);
const received = new Map(); // every message this peer received or sent, by id
const MEDIA_KINDS = ['imageMessage', 'videoMessage', 'audioMessage', 'documentMessage', 'stickerMessage'];
const known = (id) => { const m = received.get(id); if (!m) throw new Error('no message with id ' + id); return m; };
// JSON to AnyMessageContent: {"b64":..} -> Buffer; message ids -> the keys Baileys wants.
function content(c) {
  const o = {};
  for (const [k, v] of Object.entries(c)) o[k] = v && typeof v === 'object' && typeof v.b64 === 'string' ? Buffer.from(v.b64, 'base64') : v;
  if (o.react) o.react = { text: o.react.text, key: known(o.react.to).key };
  if (typeof o.edit === 'string') o.edit = known(o.edit).key;
  if (typeof o.delete === 'string') o.delete = known(o.delete).key;
  return o;
}
let sock;
let codeRequested = false;
function start() {
  sock = B.default({
    waWebSocketUrl: url,
    auth: { creds: state.creds, keys: B.makeCacheableSignalKeyStore(state.keys, logger) },
    logger,
    ...(waVersion ? { version: waVersion } : {}),
    browser: B.Browsers.ubuntu('Chrome'),
    connectTimeoutMs: 10000,
    defaultQueryTimeoutMs: 10000,
    shouldSyncHistoryMessage: () => false,
    markOnlineOnConnect: false
  });
  sock.ev.on('creds.update', async () => { await saveCreds(); out({ event: 'creds', me: state.creds.me }); });
  sock.ev.on('connection.update', async (u) => {
    if (u.qr) {
      out({ event: 'qr', qr: u.qr });
      if (pairPhone && !codeRequested && !state.creds.registered) {
        codeRequested = true;
        try { out({ event: 'pairing-code', code: await sock.requestPairingCode(pairPhone) }); }
        catch (e) { out({ event: 'error', error: String(e?.stack || e) }); }
      }
    }
    if (!u.connection) return;
    const statusCode = u.lastDisconnect?.error?.output?.statusCode;
    out({ event: 'connection', connection: u.connection, statusCode, isNewLogin: u.isNewLogin, me: sock.user,
      error: u.lastDisconnect?.error ? String(u.lastDisconnect.error.message) : undefined });
    if (u.connection === 'close' && statusCode === B.DisconnectReason.restartRequired) { out({ event: 'restart' }); start(); }
  });
  sock.ev.on('messages.upsert', ({ messages, type }) => {
    for (const m of messages) {
      received.set(m.key.id, m);
      const msg = m.message || {};
      const kind = Object.keys(msg).find((k) => k !== 'messageContextInfo' && k !== 'senderKeyDistributionMessage');
      const mediaKind = MEDIA_KINDS.find((k) => msg[k]);
      const media = mediaKind ? msg[mediaKind] : undefined;
      const proto = msg.protocolMessage;
      const edited = proto?.editedMessage;
      const poll = msg.pollCreationMessage ?? msg.pollCreationMessageV2 ?? msg.pollCreationMessageV3;
      out({ event: 'message', type, id: m.key.id, from: m.key.remoteJid, fromAlt: m.key.remoteJidAlt, participant: m.key.participant, participantAlt: m.key.participantAlt, fromMe: m.key.fromMe,
        kind, stub: m.messageStubType, stubParameters: m.messageStubParameters,
        text: msg.conversation ?? msg.extendedTextMessage?.text ?? media?.caption,
        quoted: (msg.extendedTextMessage ?? media ?? msg.locationMessage ?? msg.contactMessage)?.contextInfo?.stanzaId ?? undefined,
        media: media ? { kind: mediaKind, mimetype: media.mimetype, fileLength: String(media.fileLength), directPath: media.directPath,
          ptt: media.ptt ?? undefined, fileName: media.fileName ?? undefined, caption: media.caption ?? undefined } : undefined,
        protocol: proto ? { type: proto.type, id: proto.key?.id, text: edited?.conversation ?? edited?.extendedTextMessage?.text } : undefined,
        reaction: msg.reactionMessage ? { text: msg.reactionMessage.text, key: msg.reactionMessage.key } : undefined,
        location: msg.locationMessage ? { latitude: msg.locationMessage.degreesLatitude, longitude: msg.locationMessage.degreesLongitude,
          name: msg.locationMessage.name ?? undefined, address: msg.locationMessage.address ?? undefined } : undefined,
        contact: msg.contactMessage ? { displayName: msg.contactMessage.displayName, vcard: msg.contactMessage.vcard } : undefined,
        poll: poll ? { name: poll.name, options: poll.options.map((o) => o.optionName), selectable: poll.selectableOptionsCount,
          hasSecret: Boolean(msg.messageContextInfo?.messageSecret?.length) } : undefined });
    }
  });
  sock.ev.on('messages.update', (updates) => { for (const update of updates) out({ event: 'receipt', update }); });
  sock.ev.on('message-receipt.update', (updates) => { for (const update of updates) out({ event: 'receipt', update }); });
  sock.ev.on('presence.update', ({ id, presences }) => out({ event: 'presence', id, presences }));
  sock.ev.on('groups.upsert', (groups) => { for (const g of groups) out({ event: 'group', id: g.id, subject: g.subject }); });
}
start();

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  try {
    const c = JSON.parse(line);
    if (c.cmd === 'send') {
      const quoted = c.quote ? received.get(c.quote) : undefined;
      const r = await sock.sendMessage(c.to, { text: c.text }, quoted ? { quoted } : {});
      out({ event: 'sent', id: r.key.id, to: c.to });
    } else if (c.cmd === 'send_message') {
      const r = await sock.sendMessage(c.to, content(c.content), c.quote ? { quoted: known(c.quote) } : {});
      received.set(r.key.id, r);
      out({ event: 'sent', id: r.key.id, to: c.to });
    } else if (c.cmd === 'send_image') {
      const r = await sock.sendMessage(c.to, { image: Buffer.from(c.b64, 'base64'), caption: c.caption, mimetype: c.mimetype || 'image/png' });
      out({ event: 'sent', id: r.key.id, to: c.to });
    } else if (c.cmd === 'download') {
      const m = received.get(c.id);
      if (!m) throw new Error('no received message ' + c.id);
      const buf = await B.downloadMediaMessage(m, 'buffer', {});
      out({ event: 'downloaded', id: c.id, b64: Buffer.from(buf).toString('base64') });
    } else if (c.cmd === 'group_metadata') {
      const g = await sock.groupMetadata(c.jid);
      out({ event: 'group_metadata', id: g.id, subject: g.subject, addressingMode: g.addressingMode, participants: g.participants.map((p) => p.id) });
    } else if (c.cmd === 'logout') await sock.logout();
    else if (c.cmd === 'quit') break;
    else out({ event: 'error', error: 'unknown cmd ' + c.cmd });
  } catch (e) { out({ event: 'error', error: String(e?.stack || e) }); }
}
await saveCreds();
sock.end(undefined);
process.exit(0);
