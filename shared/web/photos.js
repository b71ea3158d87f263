// A delivered photo in a transcript (agent workspace and consumer view alike): the image with
// its caption as alt text, the caption under it, a "Download" link, and a full-page view
// (role="dialog", closed by Escape) when the photo is clicked or activated by keyboard.
import { el, formatTime, reasonText } from "./api.js";

const loaded = new Map(); // file_id -> Promise<blob: URL>, so a refresh never fetches a photo twice

function photoUrl(api, fileId) {
  if (!loaded.has(fileId)) {
    const promise = api.photoUrl(fileId);
    promise.catch(() => loaded.delete(fileId));
    loaded.set(fileId, promise);
  }
  return loaded.get(fileId);
}

function downloadName(message) {
  const ext = { "image/jpeg": "jpg", "image/png": "png", "image/gif": "gif" }[message.content?.content_type] || "img";
  return `photo-${message.file_id.slice(0, 12)}.${ext}`;
}

/** The <figure> of one published message; the image arrives when its bytes are fetched. */
export function photoFigure(api, message, { senderLabel } = {}) {
  const caption = message.caption || message.content?.caption || "";
  const alt = caption || "Photo";
  const { width, height } = message.content || {};
  const img = el("img", { alt, className: "photo-img", width, height, decoding: "async" });
  const open = el("a", { href: "#", className: "photo-open", title: "Open full page" }, img);
  const download = el("a", { className: "photo-download", text: "Download", download: downloadName(message) });
  const meta = el("div", { className: "photo-meta" },
    senderLabel ? el("span", { className: "photo-sender", text: senderLabel }) : null,
    el("time", { dateTime: message.occurred_at, text: formatTime(message.occurred_at) }),
    download);
  const figure = el("figure", { className: "photo loading", "data-file-id": message.file_id },
    el("div", { className: "photo-frame" }, open),
    caption ? el("figcaption", { className: "photo-caption", text: caption }) : null,
    meta);
  open.addEventListener("click", (event) => {
    event.preventDefault();
    if (img.src) openLightbox({ src: img.src, alt, caption, download: download.download, returnFocus: open });
  });
  photoUrl(api, message.file_id).then((url) => {
    img.src = url;
    open.href = url;
    download.href = url;
    figure.classList.remove("loading");
  }, (error) => {
    figure.classList.remove("loading");
    figure.classList.add("failed");
    open.replaceWith(el("p", { className: "photo-error", role: "status", text: reasonText(error.code) }));
    download.remove();
  });
  return figure;
}

let lightbox;

/** The full-page view: a modal <dialog> (Escape closes it, focus returns where it was). */
export function openLightbox({ src, alt, caption, download, returnFocus }) {
  if (!lightbox) {
    const img = el("img", { className: "lightbox-img", alt: "" });
    const text = el("p", { className: "lightbox-caption", id: "lightbox-caption" });
    const save = el("a", { className: "button secondary", text: "Download" });
    const close = el("button", { type: "button", className: "button", text: "Close" });
    lightbox = el("dialog", { className: "lightbox", "aria-label": "Photo", "aria-describedby": "lightbox-caption" },
      el("div", { className: "lightbox-body" }, img),
      el("div", { className: "lightbox-bar" }, text, el("div", { className: "lightbox-actions" }, save, close)));
    close.addEventListener("click", () => lightbox.close());
    lightbox.addEventListener("click", (event) => { if (event.target === lightbox) lightbox.close(); });
    lightbox.addEventListener("close", () => lightbox.returnFocus?.focus());
    Object.assign(lightbox, { img, text, save, closeButton: close });
    document.body.append(lightbox);
  }
  lightbox.img.src = src;
  lightbox.img.alt = alt;
  lightbox.text.textContent = caption || "";
  lightbox.save.href = src;
  lightbox.save.download = download;
  lightbox.setAttribute("aria-label", caption ? `Photo: ${caption}` : "Photo");
  lightbox.returnFocus = returnFocus;
  lightbox.showModal();
  lightbox.closeButton.focus();
}

/** Keeps `list` showing `messages` in order, adding new figures and dropping deleted ones. */
export function syncPhotos(list, messages, render) {
  const wanted = new Set(messages.map((m) => m.file_id));
  for (const node of [...list.children]) {
    if (node.dataset.fileId && !wanted.has(node.dataset.fileId)) node.remove();
  }
  let previous = null;
  for (const message of messages) {
    let node = list.querySelector(`:scope > [data-file-id="${CSS.escape(message.file_id)}"]`);
    if (!node) node = render(message);
    const expected = previous ? previous.nextElementSibling : list.firstElementChild;
    if (node !== expected) {
      if (previous) previous.after(node); else list.prepend(node);
    }
    previous = node;
  }
}

/** Keeps a scrolling transcript at its newest item while the reader is there (also as photos load). */
export function followBottom(container) {
  let stuck = true;
  const nearBottom = () => container.scrollHeight - container.scrollTop - container.clientHeight < 80;
  const stick = () => { if (stuck) container.scrollTop = container.scrollHeight; };
  container.addEventListener("scroll", () => { stuck = nearBottom(); });
  container.addEventListener("load", stick, true); // images growing the list
  return {
    stick,
    /** Jump to the newest item whatever the reader was looking at (after the user sent something). */
    jump() { stuck = true; stick(); },
  };
}
