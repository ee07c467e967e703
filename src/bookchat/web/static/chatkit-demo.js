// The /chatkit-demo page: OpenAI's <openai-chatkit> element, pointed at this server's
// POST /chatkit. A custom fetch adds the reader's token (when one is given) and the page the
// reader is on, as a Docusaurus site would (docs/chatkit.md).
"use strict";

(() => {
  const TOKEN_KEY = "bookchat.chatkit.token";
  // The element comes from OpenAI's CDN: without a network it never gets defined.
  const LOAD_SECONDS = 15;

  function stored() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
  }

  function remember(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage blocked: the token lasts as long as the page */ }
  }

  function withReader(tokenInput) {
    return (url, options = {}) => {
      const headers = new Headers(options.headers || {});
      const token = tokenInput.value.trim();
      if (token) headers.set("Authorization", `Bearer ${token}`);
      let body = options.body;
      if (typeof body === "string") {
        try {
          const request = JSON.parse(body);
          request.metadata = { ...(request.metadata || {}), page_context: location.href };
          body = JSON.stringify(request);
        } catch { /* not JSON: sent as it is */ }
      }
      return fetch(url, { ...options, headers, body });
    };
  }

  function start() {
    const root = document.querySelector(".chatkit-demo");
    const element = document.getElementById("chatkit");
    const status = document.getElementById("chatkit-status");
    const tokenInput = document.getElementById("chatkit-token");
    if (!root || !element || !status || !tokenInput) return;
    if (root.dataset.apiUrl === "") return; // the server has no ChatKit route: the page says so
    tokenInput.value = stored();
    tokenInput.addEventListener("change", () => remember(tokenInput.value.trim()));

    const late = setTimeout(() => {
      status.textContent =
        "ChatKit could not be loaded from OpenAI's CDN: this page needs to be online.";
    }, LOAD_SECONDS * 1000);

    customElements.whenDefined("openai-chatkit").then(() => {
      clearTimeout(late);
      status.textContent = "";
      element.setOptions({
        api: {
          url: root.dataset.apiUrl,
          domainKey: root.dataset.domainKey,
          fetch: withReader(tokenInput),
        },
        history: { enabled: true, showDelete: true, showRename: true },
        threadItemActions: { feedback: true, retry: true },
        startScreen: { greeting: `Ask ${root.dataset.bookTitle}` },
        composer: { placeholder: "Ask a question about the book…" },
      });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
