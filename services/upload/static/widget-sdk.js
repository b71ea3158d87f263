// Agent custom widget SDK: the "Send File" command.
//
//   import { sendFile } from "http://127.0.0.1:8080/agent/widget-sdk.js";
//   const answer = await sendFile(blob, { token, account, conversation });
//   // answer: the upload's 202 body {file_id, status: "uploaded", status_url}, or null if the user cancelled
//
// sendFile opens the same preview as the agent workspace (Caption, Send, Cancel) and sends with
// source=widget. It rejects with an Error whose `code` is the contract's error code
// (permission_denied without "Send files to consumers from custom widgets", conversation_closed,
// file_too_large, …); the user sees the refusal in plain words as well.
import { Api, ApiError, loadConfig, reasonText, sendWithRetry } from "./common/api.js";
import { notify, openPreview } from "./common/preview.js";

const BASE = new URL("./", import.meta.url);

function ensureStylesheet() {
  const href = new URL("common/base.css", BASE).href;
  if ([...document.styleSheets].some((sheet) => sheet.href === href)) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  document.head.append(link);
}

function refusal(code) {
  if (code === "permission_denied") return "Your profile is not allowed to send files from custom widgets.";
  return reasonText(code);
}

function refuse(error) {
  notify(refusal(error.code));
  return error;
}

export async function sendFile(fileOrBlob, { token, account, conversation } = {}) {
  if (!(fileOrBlob instanceof Blob)) {
    throw new ApiError(0, "invalid_request", "sendFile needs a File or a Blob");
  }
  if (!token || !account || !conversation) {
    throw new ApiError(0, "invalid_request", "sendFile needs {token, account, conversation}");
  }
  ensureStylesheet();
  const config = await loadConfig(BASE);
  const api = new Api(config, token);
  let caps;
  try {
    caps = await api.capabilities(account, conversation, "widget");
  } catch (error) {
    throw refuse(error);
  }
  if (!caps.enabled) {
    const code = caps.reason || "permission_denied";
    throw refuse(new ApiError(403, code, refusal(code)));
  }
  const choice = await openPreview(fileOrBlob, {
    maxBytes: caps.max_bytes, maxCaption: config.max_caption_chars, destination: `To conversation ${conversation}`,
  });
  if (!choice) return null;
  try {
    return await sendWithRetry(api, account, conversation, fileOrBlob, choice.caption, "widget");
  } catch (error) {
    throw refuse(error);
  }
}
