// Chats like WhatsApp Web: a chat list (names, last message, unread) beside the conversation
// (bubbles, ticks, quoted replies, reactions on their message, edited and deleted marks, media
// thumbnails and downloads) with a composer (attachment, reply, react). Live over the stream.
import { api, blobUrl, download } from "./api.js";
import { el, put, button, emptyState, field, guard, time, size, phoneOf, debounced, base64Of } from "./dom.js";
import { onLive } from "./live.js";

const EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const TICKS = { pending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", played: "✓✓", failed: "!" };
const TICK_WORDS = { pending: "waiting to send", sent: "sent", delivered: "delivered", read: "read", played: "played", failed: "not sent" };

export async function render(root, { arg }) {
  const accounts = await api("GET", "/api/v1/accounts");
  if (!accounts.length) {
    root.append(el("h1", {}, "Chats"), emptyState("No accounts yet", "Chats appear here once an account is linked and messages come and go.",
      el("a", { class: "btn primary", href: "#/welcome/first-account" }, "Add an account")));
    return null;
  }
  const [accountArg, chatArg] = (arg || "").split("/");
  const account = accounts.find((a) => a.id === accountArg) || accounts.find((a) => a.state === "active") || accounts[0];
  const state = { account, chat: chatArg || null, chats: [], messages: [], replyTo: null, reacting: null, archived: false };

  const accSel = el("select", { id: "chat-account" }, accounts.map((a) => el("option", { value: a.id }, `${a.name}${a.phone ? " · " + a.phone : ""}`)));
  accSel.value = account.id;
  accSel.addEventListener("change", () => { location.hash = "#/chats/" + accSel.value; });
  const search = el("input", { id: "chat-search", type: "search", placeholder: "Search or start a chat: name or phone", autocomplete: "off" });
  const list = el("ul", { id: "chat-list", class: "chat-list", "aria-label": "Chats" });
  const archivedToggle = el("button", { type: "button", class: "btn small ghost", id: "chat-archived" }, "Archived");
  const side = el("aside", { class: "chat-side" },
    field("Account", accSel),
    el("form", { class: "row", id: "chat-new", onsubmit: (e) => { e.preventDefault(); const v = search.value.trim(); if (/^[+\d][\d\s().-]{5,}$/.test(v)) openChat(v); } },
      el("label", { class: "sr-only", for: "chat-search" }, "Search chats"), search),
    el("div", { class: "row between small" }, el("span", { class: "muted" }, "Enter a phone number to start a new chat."), archivedToggle),
    list);
  const conv = el("section", { class: "chat-main", id: "conversation", "aria-label": "Conversation" });
  const layout = el("div", { class: "chats" + (state.chat ? " open" : "") }, side, conv);
  root.append(el("h1", { class: "sr-only" }, "Chats"), layout);
  search.addEventListener("input", () => drawList());
  archivedToggle.addEventListener("click", () => { state.archived = !state.archived; archivedToggle.setAttribute("aria-pressed", String(state.archived)); drawList(); });

  // Names people gave themselves (push names) seen on their messages, for chats the phone's
  // address book does not name.
  const pushNames = new Map();
  const notePushName = (m) => { if (m && m.direction === "incoming" && (m.sender_name || m.push_name)) pushNames.set(m.chat, m.sender_name || m.push_name); };
  function chatName(c) { return c.name || pushNames.get(c.chat) || (c.kind === "group" ? "Group " + c.chat.split("@")[0] : phoneOf(c.chat)); }
  function preview(m) {
    if (!m) return "";
    if (m.revoked) return "This message was deleted";
    const what = m.kind === "text" ? "" : { image: "📷 Photo", video: "🎥 Video", audio: "🎤 Audio", document: "📄 " + ((m.media && m.media.file_name) || "Document"), sticker: "Sticker", location: "📍 Location", contact: "👤 Contact", poll: "📊 Poll" }[m.kind] || m.kind;
    return (m.direction === "outgoing" ? "You: " : "") + [what, m.body].filter(Boolean).join(" ");
  }

  async function loadList() {
    const page = await api("GET", `/api/v1/accounts/${account.id}/chats?limit=200`);
    state.chats = page.chats;
    for (const c of state.chats) notePushName(c.last_message);
    drawList();
  }
  function drawList() {
    const q = search.value.trim().toLowerCase();
    const shown = state.chats.filter((c) => c.archived === state.archived)
      .filter((c) => !q || chatName(c).toLowerCase().includes(q) || c.chat.includes(q.replace(/[^\d]/g, "") || "\u0000"));
    const archivedCount = state.chats.filter((c) => c.archived).length;
    archivedToggle.textContent = state.archived ? "Back to chats" : `Archived (${archivedCount})`;
    archivedToggle.hidden = !archivedCount && !state.archived;
    if (!state.chats.length) {
      put(list, el("li", {}, emptyState("No chats yet", account.state === "active"
        ? "Type a phone number above and press Enter to write the first message, or wait for someone to write."
        : "Link this account first; its chats appear here.")));
      return;
    }
    put(list, ...shown.map((c) => el("li", {},
      el("a", { href: `#/chats/${account.id}/${encodeURIComponent(c.chat)}`, class: "chat-item" + (c.chat === state.chat ? " active" : ""), "data-chat": c.chat,
        ...(c.chat === state.chat ? { "aria-current": "true" } : {}) },
        el("span", { class: "avatar", "aria-hidden": "true" }, chatName(c).replace(/^\+/, "").slice(0, 1).toUpperCase()),
        el("span", { class: "chat-text" },
          el("span", { class: "row between" }, el("strong", { class: "chat-name" }, chatName(c)), el("small", { class: "muted" }, time(c.last_message_at))),
          el("span", { class: "row between" }, el("span", { class: "muted ellipsis" }, (c.pinned ? "📌 " : "") + (c.muted_until ? "🔇 " : "") + preview(c.last_message)),
            c.unread_count ? el("span", { class: "unread" }, String(c.unread_count), el("span", { class: "sr-only" }, " unread")) : null))))));
    if (!shown.length) list.append(el("li", { class: "muted pad" }, "No chat matches."));
  }

  function openChat(chat) { location.hash = `#/chats/${account.id}/${encodeURIComponent(chat)}`; }

  // The conversation.
  const history = el("div", { class: "history", id: "msg-history", role: "log", "aria-live": "polite", "aria-label": "Messages", tabindex: "0" });
  const replyBar = el("div", { class: "reply-bar", id: "reply-bar", hidden: true });
  const text = el("textarea", { id: "composer-text", rows: "1", placeholder: "Type a message", "aria-label": "Message" });
  const file = el("input", { id: "composer-file", type: "file", class: "sr-only" });
  const fileLabel = el("label", { for: "composer-file", class: "btn", title: "Attach a photo, video or document", tabindex: "0" }, "Attach");
  fileLabel.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); file.click(); } });
  const fileName = el("span", { class: "muted small", id: "composer-file-name" });
  file.addEventListener("change", () => { fileName.textContent = file.files[0] ? `${file.files[0].name} (${size(file.files[0].size)})` : ""; });
  const composer = el("form", { class: "composer", id: "composer" }, fileLabel, file, el("div", { class: "grow" }, fileName, text), el("button", { class: "btn primary", id: "composer-send" }, "Send"));
  text.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); composer.requestSubmit(); } });
  composer.addEventListener("submit", guard(async (e) => {
    e.preventDefault();
    const f = file.files[0];
    const body = { to: state.chat };
    if (f) {
      const kind = f.type.startsWith("image/") ? "image" : f.type.startsWith("video/") ? "video" : f.type.startsWith("audio/") ? "audio" : "document";
      body.media = { kind, data_base64: base64Of(await f.arrayBuffer()), ...(f.type ? { mimetype: f.type } : {}), ...(kind === "document" ? { file_name: f.name } : {}), ...(text.value && kind !== "audio" ? { caption: text.value } : {}) };
    } else {
      if (!text.value.trim()) return;
      body.text = text.value;
    }
    if (state.replyTo) body.reply_to = state.replyTo.id;
    await api("POST", `/api/v1/accounts/${account.id}/messages`, body);
    text.value = ""; file.value = ""; fileName.textContent = ""; setReply(null);
    await Promise.all([loadConversation(), loadList()]);
  }));

  function setReply(m) {
    state.replyTo = m;
    replyBar.hidden = !m;
    if (m) put(replyBar, el("div", { class: "quote" }, el("strong", {}, m.direction === "outgoing" ? "You" : senderName(m)), el("span", {}, preview({ ...m, direction: "incoming" }))),
      button("✕", () => setReply(null), "icon ghost", { "aria-label": "Cancel the reply", id: "reply-cancel" }));
    if (m) text.focus();
  }
  function senderName(m) { return m.sender_name || m.push_name || m.sender_phone || phoneOf(m.sender) || "Them"; }

  function mediaOf(m) {
    if (!m.media) return null;
    const path = `/api/v1/accounts/${account.id}/messages/${m.id}/media`;
    const name = m.media.file_name || (m.kind + (m.media.mimetype ? "." + m.media.mimetype.split("/")[1] : ""));
    if (!m.media.downloadable) return el("div", { class: "muted small" }, `${m.kind} · ${size(m.media.size)} (not downloadable)`);
    if (m.kind === "image" || m.kind === "sticker") {
      const img = el("img", { class: "thumb", alt: m.body ? "Photo: " + m.body : "Photo", "data-thumb": m.id });
      blobUrl(path).then((u) => { img.src = u; }).catch((e) => { img.replaceWith(el("span", { class: "error small" }, e.message)); });
      return el("button", { type: "button", class: "thumb-button", "aria-label": "Download the photo", onclick: guard(() => download(path, name)) }, img);
    }
    if (m.kind === "video" || m.kind === "audio") {
      const media = el(m.kind, { controls: true, preload: "metadata", class: m.kind === "video" ? "thumb" : "" });
      blobUrl(path).then((u) => { media.src = u; }).catch(() => {});
      return media;
    }
    return el("button", { type: "button", class: "doc", "data-download": m.id, onclick: guard(() => download(path, name)) },
      el("span", { "aria-hidden": "true" }, "📄"), el("span", {}, el("strong", {}, name), el("small", { class: "muted" }, ` ${size(m.media.size)} · Download`)));
  }

  function bubble(m, byWaId, byId) {
    const out = m.direction === "outgoing";
    const quoted = m.quoted_id ? byId.get(m.quoted_id) : m.quoted_wa_message_id ? byWaId.get(m.quoted_wa_message_id) : null;
    const body = m.revoked ? el("p", { class: "deleted" }, "🚫 This message was deleted")
      : [mediaOf(m), m.body ? el("p", { class: "text" }, m.body) : null,
        m.kind === "location" && m.location ? el("p", {}, `📍 ${m.location.name || ""} ${m.location.latitude}, ${m.location.longitude}`) : null,
        m.kind === "contact" && m.contact ? el("p", {}, "👤 " + (m.contact.display_name || "Contact")) : null,
        m.kind === "poll" && m.poll ? el("p", {}, "📊 " + m.poll.name) : null];
    const react = el("div", { class: "react-menu", hidden: state.reacting !== m.id, role: "group", "aria-label": "React" },
      EMOJI.map((e) => button(e, async () => {
        await api("POST", `/api/v1/accounts/${account.id}/messages/${m.id}/reaction`, { emoji: e });
        state.reacting = null; await loadConversation();
      }, "icon ghost", { "aria-label": "React " + e })));
    return el("div", { class: "msg " + (out ? "out" : "in"), "data-id": m.id, "data-status": m.status, "data-kind": m.kind },
      el("div", { class: "bubble" },
        !out && state.chat.endsWith("@g.us") ? el("div", { class: "sender" }, senderName(m)) : null,
        quoted || m.quoted_wa_message_id ? el("div", { class: "quote", "data-quoted": quoted ? quoted.id : m.quoted_wa_message_id },
          el("strong", {}, quoted ? (quoted.direction === "outgoing" ? "You" : senderName(quoted)) : "Earlier message"),
          el("span", {}, quoted ? preview({ ...quoted, direction: "incoming" }) || "Media" : "not in this history")) : null,
        body,
        el("div", { class: "meta" },
          m.edited_at && !m.revoked ? el("span", { class: "edited" }, "edited") : null,
          el("time", {}, time(m.created_at)),
          out ? el("span", { class: "tick t-" + m.status, title: TICK_WORDS[m.status] || m.status }, el("span", { "aria-hidden": "true" }, TICKS[m.status] || ""), el("span", { class: "sr-only" }, TICK_WORDS[m.status] || m.status)) : null),
        m.error && out ? el("div", { class: "error small" }, m.error) : null),
      m.reactions.length ? el("div", { class: "reactions", role: "group", "aria-label": "Reactions" },
        m.reactions.map((r) => el("span", { class: "reaction", "data-emoji": r.emoji, title: r.sender === "me" ? "You" : phoneOf(r.sender) }, r.emoji))) : null,
      m.revoked ? null : el("div", { class: "msg-actions" },
        button("Reply", () => setReply(m), "small ghost", { "data-action": "reply" }),
        button("React", () => {
          // Kept in the state, so a live redraw keeps the menu open.
          state.reacting = state.reacting === m.id ? null : m.id;
          react.hidden = state.reacting !== m.id;
          if (!react.hidden) react.querySelector("button").focus();
        }, "small ghost", { "data-action": "react" }),
        react));
  }

  async function loadConversation() {
    if (!state.chat) return;
    const page = await api("GET", `/api/v1/accounts/${account.id}/messages?limit=200&chat=${encodeURIComponent(state.chat)}`);
    // Reactions are drawn on their message; a stored reaction row is not a bubble of its own.
    state.messages = page.messages.filter((m) => m.kind !== "reaction").reverse();
    if (!state.chat.endsWith("@g.us")) for (const m of state.messages) notePushName(m);
    const title = document.getElementById("msg-title");
    const c = state.chats.find((x) => x.chat === state.chat);
    if (title && c) title.textContent = chatName(c);
    drawList();
    const byWaId = new Map(state.messages.filter((m) => m.wa_message_id).map((m) => [m.wa_message_id, m]));
    const byId = new Map(state.messages.map((m) => [m.id, m]));
    const atBottom = history.scrollHeight - history.scrollTop - history.clientHeight < 60;
    put(history, ...(state.messages.length ? state.messages.map((m) => bubble(m, byWaId, byId))
      : [el("p", { class: "muted center pad" }, "No messages yet. Say hello below.")]));
    if (atBottom || !history.dataset.loaded) history.scrollTop = history.scrollHeight;
    history.dataset.loaded = "true";
    if (c && c.unread_count) {
      api("PATCH", `/api/v1/accounts/${account.id}/chats/${encodeURIComponent(state.chat)}`, { read: true }).catch(() => {});
    }
  }

  function drawConversation() {
    if (!state.chat) {
      put(conv, el("div", { class: "empty" }, el("h2", {}, "Pick a chat"), el("p", {}, "Choose a chat on the left, or type a phone number there and press Enter.")));
      return;
    }
    const c = state.chats.find((x) => x.chat === state.chat);
    put(conv, 
      el("div", { class: "conv-head row" },
        el("a", { class: "btn icon back", href: "#/chats/" + account.id, "aria-label": "Back to the chat list" }, "←"),
        el("h2", { id: "msg-title" }, c ? chatName(c) : phoneOf(state.chat) || state.chat),
        c && c.name ? el("span", { class: "muted small" }, phoneOf(c.chat)) : null),
      history, replyBar, account.state === "active" ? composer : el("p", { class: "muted pad" }, "Link this account to send messages."));
  }

  await loadList();
  if (state.chat && !state.chat.includes("@")) {
    // A typed phone number: the chat JID the API uses for it.
    const digits = state.chat.replace(/[^\d]/g, "");
    const known = state.chats.find((c) => c.chat.startsWith(digits + "@"));
    state.chat = known ? known.chat : digits + "@s.whatsapp.net";
  }
  drawConversation();
  drawList();
  await loadConversation();
  if (state.chat) text.focus(); else search.focus();

  const reloadAll = debounced(() => Promise.all([loadList(), loadConversation()]), 150);
  return onLive((ev) => {
    if (ev.account_id && ev.account_id !== account.id) return;
    if (["incoming_message", "message_status_update", "message_reaction", "message_edited", "message_revoked", "message_sent", "chat_update", "ready"].includes(ev.event)) reloadAll();
  });
}
