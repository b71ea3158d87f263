// The preview shown before a photo is sent (agent workspace and widget SDK alike): the photo,
// a "Caption" text box, "Send" and "Cancel". A modal <dialog>: Escape cancels.
import { el } from "./api.js";

function formatBytes(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

/**
 * Shows the preview of `file`. Resolves to {caption} when the user presses Send, or null when
 * they cancel (Cancel, Escape). `maxBytes` refuses a too large file before any upload.
 */
export function openPreview(file, { maxBytes = 5 * 1024 * 1024, maxCaption = 2000, destination = "" } = {}) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const tooLarge = file.size > maxBytes;
    const image = el("img", { src: url, alt: "Preview of the chosen photo", className: "preview-img" });
    image.addEventListener("error", () => image.replaceWith(el("p", { className: "preview-none",
      text: "No preview: this file does not look like a photo." })));
    const caption = el("textarea", { id: "fs-preview-caption", className: "field", rows: 2, maxLength: maxCaption,
      placeholder: "Add a caption (optional)" });
    const counter = el("span", { className: "counter", "aria-live": "off", text: `0 / ${maxCaption}` });
    const send = el("button", { type: "submit", className: "button primary", text: "Send", disabled: tooLarge });
    const cancel = el("button", { type: "button", className: "button secondary", text: "Cancel" });
    const form = el("form", { method: "dialog", className: "preview-form" },
      el("h2", { id: "fs-preview-title", className: "dialog-title", text: "Send a photo" }),
      destination ? el("p", { className: "dialog-subtitle", text: destination }) : null,
      el("div", { className: "preview-frame" }, image),
      el("p", { className: "preview-file" },
        el("span", { className: "preview-name", text: file.name || "Photo" }), ` · ${formatBytes(file.size)}`),
      tooLarge ? el("p", { role: "alert", className: "notice error",
        text: `This photo is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}. Choose a smaller one.` }) : null,
      el("div", { className: "field-row" },
        el("label", { htmlFor: "fs-preview-caption", className: "label", text: "Caption" }), counter),
      caption,
      el("div", { className: "dialog-actions" }, cancel, send));
    const dialog = el("dialog", { className: "preview", "aria-labelledby": "fs-preview-title" }, form);
    let result = null;
    caption.addEventListener("input", () => { counter.textContent = `${caption.value.length} / ${maxCaption}`; });
    caption.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !send.disabled) form.requestSubmit();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      result = { caption: caption.value.trim() };
      dialog.close();
    });
    cancel.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      URL.revokeObjectURL(url);
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    (tooLarge ? cancel : caption).focus();
  });
}

let toasts;

/** A message the user must see (role="alert"), until dismissed. */
export function notify(text, { kind = "error" } = {}) {
  if (!toasts || !toasts.isConnected) {
    toasts = el("div", { className: "toasts" });
    document.body.append(toasts);
  }
  const dismiss = el("button", { type: "button", className: "toast-dismiss", "aria-label": "Dismiss", text: "×" });
  const toast = el("div", { className: `toast ${kind}`, role: "alert" }, el("p", { text }), dismiss);
  dismiss.addEventListener("click", () => toast.remove());
  toasts.append(toast);
  return toast;
}
