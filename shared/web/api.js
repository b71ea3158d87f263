// What both pages share: the fragment, the HTTP API (errors as the contract's codes), photos
// fetched with the bearer token into blob: URLs, and the contract's codes in plain words.

/** token, account and conversations from the URL fragment (never a query string or a cookie). */
export function readFragment(hash = location.hash) {
  const params = new URLSearchParams(hash.replace(/^#/, ""));
  const conversations = params.getAll("conversation").flatMap((c) => c.split(",")).map((c) => c.trim()).filter(Boolean);
  return { token: params.get("token") || "", account: params.get("account") || "", conversations };
}

/** The claims of a bearer token, for display only (the services verify it). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** Where the two services are, as the serving service says (FS_PUBLIC_UPLOAD_URL / FS_PUBLIC_DELIVERY_URL). */
export async function loadConfig(base) {
  const response = await fetch(new URL("config.json", base), { cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, "unavailable", "the page configuration did not load");
  return response.json();
}

export class Api {
  constructor(config, token) {
    this.upload = config.upload_url;
    this.delivery = config.delivery_url;
    this.token = token;
  }

  async request(base, path, { method = "GET", body, headers = {}, as = "json" } = {}) {
    let response;
    try {
      response = await fetch(base + path, {
        method, body, cache: "no-store",
        headers: { Authorization: `Bearer ${this.token}`, ...headers },
      });
    } catch {
      throw new ApiError(0, "unavailable", "the service did not answer");
    }
    if (!response.ok) {
      let error = {};
      try { error = (await response.json()).error || {}; } catch { /* not JSON */ }
      throw new ApiError(response.status, error.code || `http_${response.status}`, error.message);
    }
    return as === "blob" ? response.blob() : response.json();
  }

  capabilities(account, conversation, source) {
    const path = `/v1/accounts/${enc(account)}/conversations/${enc(conversation)}/capabilities?source=${source}`;
    return this.request(this.upload, path);
  }

  send(account, conversation, file, caption, source, idempotencyKey) {
    const form = new FormData();
    form.append("file", file, file.name || "photo");
    if (caption) form.append("caption", caption);
    form.append("source", source);
    return this.request(this.upload, `/v1/accounts/${enc(account)}/conversations/${enc(conversation)}/files`,
      { method: "POST", body: form, headers: { "Idempotency-Key": idempotencyKey } });
  }

  status(fileId) {
    return this.request(this.upload, `/v1/files/${enc(fileId)}`);
  }

  messages(conversation) {
    return this.request(this.delivery, `/v1/conversations/${enc(conversation)}/messages`);
  }

  /** The delivered photo as a blob: URL (fetched with the bearer token; no token in any URL). */
  async photoUrl(fileId) {
    return URL.createObjectURL(await this.request(this.delivery, `/v1/files/${enc(fileId)}/content`, { as: "blob" }));
  }
}

/** Sends with retries on 503 and lost connections, always with the same Idempotency-Key. */
export async function sendWithRetry(api, account, conversation, file, caption, source) {
  const key = crypto.randomUUID();
  for (let attempt = 1; ; attempt++) {
    try {
      return await api.send(account, conversation, file, caption, source, key);
    } catch (e) {
      if (e.code !== "unavailable" || attempt >= 4) throw e;
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    }
  }
}

function enc(value) {
  return encodeURIComponent(value);
}

const REASONS = {
  unauthenticated: "Your session has expired. Open the page again with a new link.",
  feature_disabled: "File sharing is not enabled for this account. Contact your account team.",
  file_sharing_disabled: "File sharing is turned off in this account's settings.",
  permission_denied: "Your profile is not allowed to send files from here.",
  conversation_not_found: "This conversation could not be found.",
  conversation_closed: "This conversation is closed. A photo cannot reopen it.",
  channel_not_supported: "This conversation's channel cannot receive photos (only web messaging can).",
  file_too_large: "The photo is larger than the 5 MB limit.",
  unsupported_type: "Only JPEG, PNG and GIF photos can be sent.",
  invalid_request: "The photo could not be sent: the request was not valid.",
  unavailable: "The service is not reachable right now. Try again in a moment.",
  malware_detected: "The photo was blocked by the malware scan and was not sent.",
  corrupt_image: "The file is damaged or is not a readable image, so it was not sent.",
  image_too_large: "The image has too many pixels to be processed, so it was not sent.",
  consumer_forgotten: "The consumer's data was erased at their request, so the photo was not sent.",
  processing_failed: "The photo could not be processed. Try sending it again.",
  forbidden: "You don't have access to this conversation.",
  not_found: "This conversation could not be found.",
  gone: "This photo has been deleted.",
};

/** A contract error or rejection code in plain words. */
export function reasonText(code) {
  return REASONS[code] || `The photo could not be sent (${code}).`;
}

export function formatTime(iso) {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return "";
  const sameDay = when.toDateString() === new Date().toDateString();
  return sameDay
    ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

/** Creates an element: el("p", {className: "x", text: "hi"}, child, …). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** Calls fn now and then every `ms` while the page is open; one call at a time. */
export function every(ms, fn) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try { await fn(); } finally { running = false; }
  };
  tick();
  return setInterval(tick, ms);
}
