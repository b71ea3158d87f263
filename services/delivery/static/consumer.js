// The consumer view: the conversation's photos in order, each with its caption; a click opens it
// full screen. A caller who may not see the conversation gets a readable message, never a photo.
import { Api, el, every, loadConfig, readFragment, reasonText } from "./common/api.js";
import { followBottom, photoFigure, syncPhotos } from "./common/photos.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 2000;
const fragment = readFragment();
const conversationId = fragment.conversations[0];

function refuse(text) {
  $("page-alert").hidden = false;
  $("page-alert").textContent = text;
  $("photos").replaceChildren();
  $("empty").hidden = true;
}

async function start() {
  if (!fragment.token || !conversationId) {
    refuse("This page needs a token and a conversation in its address (fileshare open consumer …).");
    return;
  }
  let api;
  try {
    api = new Api(await loadConfig(location.href), fragment.token);
  } catch (error) {
    refuse(reasonText(error.code));
    return;
  }
  const bottom = followBottom($("transcript"));
  const timer = every(REFRESH_MS, async () => {
    let answer;
    try {
      answer = await api.messages(conversationId);
    } catch (error) {
      if (error.code === "unavailable") return; // try again on the next tick
      if (error.code === "not_found") { // not opened yet (or not known): nothing to show, keep asking
        $("empty").hidden = false;
        return;
      }
      refuse(error.code === "unauthenticated" ? reasonText(error.code) : "You don't have access to this conversation.");
      clearInterval(timer);
      return;
    }
    syncPhotos($("photos"), answer.messages, (message) => el("li", { className: "item incoming",
      "data-file-id": message.file_id }, photoFigure(api, message)));
    $("empty").hidden = answer.messages.length > 0;
    bottom.stick();
  });
}

start();
