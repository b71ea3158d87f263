// The agent workspace: a transcript of photos per conversation, an attach button driven by the
// capabilities API, a preview before sending, and live progress of every photo being sent.
import { Api, ApiError, claimsOf, el, every, formatTime, loadConfig, readFragment, reasonText, sendWithRetry }
  from "./common/api.js";
import { followBottom, photoFigure, syncPhotos } from "./common/photos.js";
import { openPreview } from "./common/preview.js";

const $ = (id) => document.getElementById(id);
const STAGES = {
  uploaded: "Checking the photo…",
  sanitized: "Resizing…",
  resized: "Delivering…",
  published: "Delivered",
};
const REFRESH_MS = 2000;
const STATUS_MS = 1000;

const fragment = readFragment();
const bottom = followBottom($("transcript"));
const claims = claimsOf(fragment.token);
const state = {
  api: null,
  config: null,
  account: fragment.account,
  conversations: new Map(), // id -> {id, draft, caps, outbox: Map(localId -> entry)}
  current: null,
};

function conversation(id) {
  if (!state.conversations.has(id)) {
    state.conversations.set(id, { id, draft: "", caps: null, outbox: new Map(), unread: 0 });
  }
  return state.conversations.get(id);
}

function showAlert(text) {
  $("page-alert").hidden = !text;
  $("page-alert").textContent = text || "";
}

// ---------------------------------------------------------------- conversations

function renderConversationList() {
  const list = $("conversations");
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.conversation : null;
  list.replaceChildren(...[...state.conversations.values()].map((c) => {
    const sending = [...c.outbox.values()].filter((e) => e.state === "pending" && e.stage !== "published").length;
    const button = el("button", { type: "button", className: "conversation-link", "data-conversation": c.id,
      "aria-current": c.id === state.current ? "page" : null },
      el("span", { className: "conversation-name", text: c.id }),
      sending ? el("span", { className: "badge", text: `${sending} sending` }) : null,
      c.unread ? el("span", { className: "badge attention", text: `${c.unread} new` }) : null);
    button.addEventListener("click", () => select(c.id));
    return el("li", {}, button);
  }));
  // Re-rendered on every change: a keyboard user keeps their place in the list.
  if (focused !== null) list.querySelector(`[data-conversation="${CSS.escape(focused)}"]`)?.focus();
}

function select(id) {
  const previous = state.current && conversation(state.current);
  if (previous) previous.draft = $("message").value;
  const next = conversation(id);
  next.unread = 0;
  state.current = id;
  $("conversation-title").textContent = `Conversation ${id}`;
  $("conversation-sub").textContent = `Account ${state.account}`;
  $("message").value = next.draft;
  $("delivered").replaceChildren();
  bottom.jump();
  renderCapabilities(next.caps);
  renderOutbox();
  renderConversationList();
  refresh();
}

// ---------------------------------------------------------------- capabilities

// The file browser offers the types the account accepts; names, since not every system maps
// .heic or .webp to a type.
const PHOTO_TYPES = {
  "image/jpeg": { name: "JPEG", extensions: [".jpg", ".jpeg"] }, "image/png": { name: "PNG", extensions: [".png"] },
  "image/gif": { name: "GIF", extensions: [".gif"] }, "image/heic": { name: "HEIC", extensions: [".heic", ".heif"] },
  "image/webp": { name: "WebP", extensions: [".webp"] },
};

function renderAcceptedTypes(caps) {
  const types = (caps?.accepted_types || ["image/jpeg", "image/png", "image/gif"]).filter((t) => t in PHOTO_TYPES);
  $("file-input").accept = [...types, ...types.flatMap((t) => PHOTO_TYPES[t].extensions)].join(",");
  const names = types.map((t) => PHOTO_TYPES[t].name);
  const listed = names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}` : names[0] || "";
  const limit = caps?.max_bytes ? `, up to ${Math.round(caps.max_bytes / 1024 / 1024)} MB` : "";
  return `Send a photo (${listed}${limit})`;
}

function renderCapabilities(caps) {
  const attach = $("attach");
  const reason = $("attach-reason");
  attach.hidden = !caps || !caps.visible;
  const blocked = !!caps && caps.visible && !caps.enabled;
  attach.disabled = !caps || !caps.enabled;
  const sendTitle = renderAcceptedTypes(caps);
  attach.title = blocked ? reasonText(caps.reason) : sendTitle;
  reason.hidden = !blocked;
  reason.textContent = blocked ? reasonText(caps.reason) : "";
}

// ---------------------------------------------------------------- transcript

async function refresh() {
  const id = state.current;
  if (!id || !state.api) return;
  const c = conversation(id);
  const [caps, messages] = await Promise.allSettled([
    state.api.capabilities(state.account, id, "local"),
    state.api.messages(id),
  ]);
  if (id !== state.current) return; // the agent switched meanwhile
  if (caps.status === "fulfilled") {
    c.caps = caps.value;
    renderCapabilities(c.caps);
  }
  const failure = [caps, messages].find((r) => r.status === "rejected" && r.reason.code !== "not_found");
  showAlert(failure ? reasonText(failure.reason.code) : "");
  if (messages.status === "fulfilled") renderMessages(messages.value.messages);
  else if (messages.reason.code === "not_found") renderMessages([]);
}

function renderMessages(messages) {
  const delivered = new Set(messages.map((m) => m.file_id));
  syncPhotos($("delivered"), messages, (message) => {
    const mine = message.sender?.id === claims.sub;
    const who = mine ? "You" : `${message.sender?.id || "Unknown"}${message.source === "widget" ? " · widget" : ""}`;
    const figure = photoFigure(state.api, message, { senderLabel: who });
    return el("li", { className: `item ${mine ? "outgoing" : "incoming"}`, "data-file-id": message.file_id }, figure);
  });
  const c = conversation(state.current);
  for (const entry of [...c.outbox.values()]) {
    if (entry.fileId && delivered.has(entry.fileId)) forget(entry);
  }
  renderOutbox();
  $("empty").hidden = messages.length > 0 || c.outbox.size > 0;
  bottom.stick();
}

// ---------------------------------------------------------------- sending

function renderOutbox() {
  const c = state.current && conversation(state.current);
  const entries = c ? [...c.outbox.values()] : [];
  $("outbox").replaceChildren(...entries.map((entry) => {
    if (!entry.node) entry.node = outboxItem(entry);
    updateOutboxItem(entry);
    return entry.node;
  }));
  $("empty").hidden = $("delivered").children.length > 0 || entries.length > 0;
}

function outboxItem(entry) {
  const status = el("p", { className: "outbox-status" });
  const badge = el("span", { className: "badge" });
  const dismiss = el("button", { type: "button", className: "link-button", text: "Dismiss" });
  dismiss.addEventListener("click", () => {
    forget(entry);
    renderOutbox();
    renderConversationList();
    $("message").focus();
  });
  const node = el("li", { className: "item outgoing" },
    el("figure", { className: "photo" },
      el("div", { className: "photo-frame" },
        entry.previewUrl ? el("img", { src: entry.previewUrl, alt: "", className: "photo-img" })
          : el("div", { className: "photo-placeholder", "aria-hidden": "true" }),
        el("span", { className: "spinner", "aria-hidden": "true" })),
      entry.caption ? el("figcaption", { className: "photo-caption", text: entry.caption }) : null,
      el("div", { className: "photo-meta" }, badge,
        el("time", { dateTime: entry.sentAt.toISOString(), text: formatTime(entry.sentAt.toISOString()) }),
        dismiss),
      status));
  Object.assign(entry, { status, badge, dismiss });
  return node;
}

function updateOutboxItem(entry) {
  const rejected = entry.state === "rejected";
  entry.node.className = `item outgoing ${rejected ? "rejected" : "pending"}`;
  entry.node.setAttribute("aria-busy", String(!rejected));
  entry.badge.textContent = rejected ? "Not sent" : "Sending";
  entry.badge.className = `badge ${rejected ? "danger" : "progress"}`;
  entry.status.textContent = rejected ? reasonText(entry.reason) : STAGES[entry.stage] || "Uploading…";
  entry.status.setAttribute("role", rejected ? "alert" : "status");
  entry.dismiss.hidden = !rejected;
}

async function send(file) {
  const id = state.current;
  const c = conversation(id);
  const choice = await openPreview(file, {
    maxBytes: c.caps?.max_bytes, maxCaption: state.config.max_caption_chars, destination: `To conversation ${id}`,
  });
  $("message").focus();
  if (!choice) return;
  const entry = { localId: crypto.randomUUID(), conversation: id, caption: choice.caption, stage: null,
    state: "pending", previewUrl: URL.createObjectURL(file), sentAt: new Date() };
  c.outbox.set(entry.localId, entry);
  renderOutbox();
  renderConversationList();
  bottom.jump();
  try {
    const accepted = await sendWithRetry(state.api, state.account, id, file, choice.caption, "local");
    entry.fileId = accepted.file_id;
    entry.stage = accepted.status;
    follow(entry);
  } catch (error) {
    settle(entry, "rejected", error instanceof ApiError ? error.code : "unavailable");
  }
  changed(entry);
}

function settle(entry, outcome, reason) {
  entry.state = outcome;
  entry.reason = reason;
}

function forget(entry) {
  conversation(entry.conversation).outbox.delete(entry.localId);
  if (entry.previewUrl) URL.revokeObjectURL(entry.previewUrl);
  saveOutbox();
}

// Photos being sent (and refusals not yet dismissed) outlive a reload of this tab: their ids, not
// the photos, are kept in sessionStorage (per tab, per origin; never the token).
const OUTBOX_KEY = "fileshare.outbox";

function saveOutbox() {
  const kept = [...state.conversations.values()].flatMap((c) => [...c.outbox.values()])
    .filter((e) => e.fileId || e.state === "rejected")
    .map(({ localId, conversation: conv, caption, fileId, stage, state: st, reason, sentAt }) =>
      ({ localId, conversation: conv, caption, fileId, stage, state: st, reason, sentAt }));
  try { sessionStorage.setItem(OUTBOX_KEY, JSON.stringify({ account: state.account, kept })); } catch { /* full */ }
}

function restoreOutbox() {
  let saved;
  try { saved = JSON.parse(sessionStorage.getItem(OUTBOX_KEY) || "null"); } catch { saved = null; }
  if (!saved || saved.account !== state.account) return;
  for (const entry of saved.kept) {
    entry.sentAt = new Date(entry.sentAt);
    conversation(entry.conversation).outbox.set(entry.localId, entry);
    if (entry.state === "pending" && entry.fileId) follow(entry);
  }
}

function changed(entry) {
  saveOutbox();
  if (entry.conversation === state.current) {
    if (entry.node) updateOutboxItem(entry);
    if (entry.stage === "published") refresh();
  } else if (entry.state !== "pending" || entry.stage === "published") {
    conversation(entry.conversation).unread += 1;
  }
  renderConversationList();
}

/** Follows one sent photo's status until it is published or rejected, whichever conversation is open. */
function follow(entry) {
  const timer = setInterval(async () => {
    let status;
    try {
      status = await state.api.status(entry.fileId);
    } catch (error) {
      if (error.code === "unavailable") return; // try again on the next tick
      status = { status: "rejected", reason: error.code };
    }
    if (["published", "rejected", "deleted"].includes(status.status)) clearInterval(timer);
    if (status.status === entry.stage) return;
    entry.stage = status.status;
    if (status.status === "rejected" || status.status === "deleted") {
      settle(entry, "rejected", status.reason || "gone");
    }
    changed(entry);
  }, STATUS_MS);
}

// ---------------------------------------------------------------- start

function wire() {
  const input = $("file-input");
  $("attach").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    const [file] = input.files;
    input.value = "";
    if (file) send(file);
  });
  $("open-conversation").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = $("open-conversation-id");
    const id = field.value.trim();
    field.value = "";
    if (id) select(id);
  });
}

async function start() {
  wire();
  const who = claims.sub ? `${claims.sub}${claims.role ? ` · ${claims.role.replace("_", " ")}` : ""}` : "";
  $("identity").replaceChildren(
    el("span", { className: "identity-account", text: state.account ? `Account ${state.account}` : "" }),
    who ? el("span", { className: "identity-user", text: who }) : "");
  if (!fragment.token || !fragment.account) {
    showAlert("This page needs a token and an account in its address (fileshare open agent …).");
    return;
  }
  try {
    state.config = await loadConfig(location.href);
  } catch (error) {
    showAlert(reasonText(error.code));
    return;
  }
  state.api = new Api(state.config, fragment.token);
  for (const id of fragment.conversations) conversation(id);
  restoreOutbox();
  if (fragment.conversations.length) select(fragment.conversations[0]);
  else renderConversationList();
  every(REFRESH_MS, refresh);
}

start();
