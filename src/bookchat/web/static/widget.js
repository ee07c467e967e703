/*
 * bookchat widget: chat with the book from any page, with one line of HTML:
 *
 *   <script src="https://api.example.org/widget.js" data-api="https://api.example.org" defer></script>
 *
 * Attributes (all optional): data-api (the bookchat server; default: where this script came
 * from), data-title (the panel's title), data-content (CSS selector of the page's text, where
 * selecting a passage offers "Ask about this"; default: article, main, [role=main], .markdown).
 *
 * Plain JavaScript, no build step, no third-party code. Everything lives in a shadow root, so
 * the host page's CSS cannot reach in and ours cannot leak out.
 */
(() => {
  "use strict";
  // Included twice (a theme plus a page, or a single-page app re-running scripts): one widget.
  if (window.BookChat) return;

  const script = document.currentScript;
  const option = (name) => (script && script.getAttribute("data-" + name)) || "";
  const scriptOrigin = script && script.src ? new URL(script.src, location.href).origin : location.origin;
  const API = (option("api") || scriptOrigin).replace(/\/+$/, "");
  const TITLE = option("title") || "Ask the book";
  const SCOPE = option("content") || "article, main, [role='main'], .markdown";
  const SELECTION_QUESTION = "Explain this passage.";

  const TEXT = {
    offline: "You're offline. Check your connection, then try again.",
    unreachable: "Couldn't reach the chat server. Try again in a moment.",
    server: "The chat server had a problem. Try again shortly.",
    cut: "The answer was cut off. Try asking again.",
    history: "Couldn't load the earlier conversation.",
    llm_timeout: "The answer took too long. Try again.",
    llm_unavailable: "The assistant is unavailable right now. Try again shortly.",
    llm_error: "The assistant couldn't answer that. Try rephrasing it.",
  };
  // What a stored or streamed answer that stopped before its end is labelled with.
  const cutNote = (message) => message.status !== "partial" ? ""
    : message.finish_reason === "length" ? "Cut at the answer's length limit."
    : message.finish_reason === "content_filter" ? "Cut by the model's content filter."
    : "Stopped before the end.";
  const textFor = (code) => (typeof code === "string" && Object.hasOwn(TEXT, code) ? TEXT[code] : "");

  // --- storage: the conversation id and whether the panel was open, per server -------------
  // localStorage can throw (blocked cookies, sandboxed frames): the widget then just forgets.
  const storeKey = (key) => "bookchat:" + API + ":" + key;
  const store = {
    get(key) {
      try { return localStorage.getItem(storeKey(key)); } catch { return null; }
    },
    set(key, value) {
      try {
        if (value == null) localStorage.removeItem(storeKey(key));
        else localStorage.setItem(storeKey(key), value);
      } catch { /* storage unavailable */ }
    },
  };

  // --- Markdown, safely -------------------------------------------------------------------
  // Every character of the answer is escaped first; only then do the patterns below add
  // tags, and the only attribute values they write are URLs that passed safeUrl (escaped
  // again). So model output can never become markup of its own.
  const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]);
  const REVERSE = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'" };
  const unescapeHtml = (text) => text.replace(/&(amp|lt|gt|quot|#39);/g, (_, name) => REVERSE[name]);

  // http(s), mailto or a relative address; never javascript:, data:, vbscript: and friends.
  // Control characters and spaces are refused outright: browsers strip some of them before
  // reading the scheme ("java\tscript:").
  function safeUrl(url) {
    if (!url || /[\u0000-\u0020\u007f]/.test(url)) return null;
    if (/^(?:https?:\/\/|mailto:)/i.test(url)) return url;
    return /^[^:/?#]*(?:[/?#]|$)/.test(url) ? url : null; // no scheme before the first / ? #
  }

  // A citation's page; a relative BOOK_BASE_URL ("/book") means pages of the bookchat server.
  function sourceUrl(citation) {
    const url = safeUrl(citation.page_url || "");
    return url && safeUrl(new URL(url, API + "/").href);
  }

  function inline(source, citations) {
    // Finished pieces (code, links) are set aside so later patterns cannot reach into them.
    const held = [];
    const hold = (html) => "\u0000" + (held.push(html) - 1) + "\u0000";
    let s = escapeHtml(source.replace(/\u0000/g, ""));
    s = s.replace(/`([^`\n]+)`/g, (_, code) => hold("<code>" + code + "</code>"));
    s = s.replace(/\[([^\]\n]+)\]\(([^()\s]+)\)/g, (_, label, href) => {
      const url = safeUrl(unescapeHtml(href));
      return url ? hold('<a href="' + escapeHtml(url) + '">' + label + "</a>") : label;
    });
    // [n] markers point at the answer's sources.
    s = s.replace(/\[(\d{1,3})\]/g, (marker, n) => {
      const source = citations.find((c) => String(c.index) === n);
      const url = source && sourceUrl(source);
      if (!url) return marker;
      const label = "Source " + n + ": " + source.title + (source.section ? ", " + source.section : "");
      return hold('<a class="cite" href="' + escapeHtml(url) + '" aria-label="' + escapeHtml(label) + '">[' + n + "]</a>");
    });
    s = s
      .replace(/\*\*(?=\S)([^*]+?)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])__(?=\S)([^_]+?)__(?!\w)/g, "$1<strong>$2</strong>")
      .replace(/(^|[^*\w])\*(?=\S)([^*\n]+?)\*(?![*\w])/g, "$1<em>$2</em>")
      .replace(/(^|[^\w])_(?=\S)([^_\n]+?)_(?!\w)/g, "$1<em>$2</em>")
      .replace(/~~(?=\S)([^~]+?)~~/g, "<del>$1</del>");
    return s.replace(/\u0000(\d+)\u0000/g, (_, i) => held[Number(i)]);
  }

  function markdown(source, citations = []) {
    const out = [];
    const lines = source.replace(/\r\n?/g, "\n").split("\n");
    let paragraph = [];
    let list = null;
    const flush = () => {
      if (paragraph.length) out.push("<p>" + paragraph.map((l) => inline(l, citations)).join("<br>") + "</p>");
      paragraph = [];
    };
    const closeList = () => {
      if (list) out.push("</" + list + ">");
      list = null;
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      let m;
      if ((m = /^\s*(`{3,}|~{3,})\s*([\w+#.-]*)/.exec(line))) {
        flush();
        closeList();
        const code = [];
        // While an answer streams in, an unclosed fence simply runs to the end.
        for (i++; i < lines.length && !lines[i].trim().startsWith(m[1]); i++) code.push(lines[i]);
        const lang = m[2] ? ' data-lang="' + escapeHtml(m[2]) + '"' : "";
        out.push("<pre><code" + lang + ">" + escapeHtml(code.join("\n")) + "</code></pre>");
      } else if ((m = /^\s{0,3}(#{1,6})\s+(.*?)[\s#]*$/.exec(line))) {
        flush();
        closeList();
        const level = Math.min(6, m[1].length + 2); // h3 and smaller: answers live in a small panel
        out.push("<h" + level + ">" + inline(m[2], citations) + "</h" + level + ">");
      } else if ((m = /^\s*([-*+]|(\d{1,9})[.)])\s+(.*)$/.exec(line))) {
        flush();
        const tag = m[2] ? "ol" : "ul";
        if (list !== tag) {
          closeList();
          const start = m[2] && m[2] !== "1" ? ' start="' + Number(m[2]) + '"' : "";
          out.push("<" + tag + start + ">");
          list = tag;
        }
        out.push("<li>" + inline(m[3], citations) + "</li>");
      } else if (list && /^\s{2,}\S/.test(line)) {
        // A wrapped list item: stays in the item.
        out[out.length - 1] = out[out.length - 1].replace(/<\/li>$/, " " + inline(line.trim(), citations) + "</li>");
      } else if ((m = /^\s*>\s?(.*)$/.exec(line))) {
        flush();
        closeList();
        out.push("<blockquote>" + inline(m[1], citations) + "</blockquote>");
      } else if (!line.trim()) {
        flush();
        closeList();
      } else {
        closeList();
        paragraph.push(line);
      }
    }
    flush();
    closeList();
    return out.join("");
  }

  // --- Server-Sent Events over fetch (EventSource cannot POST) ------------------------------
  async function* readEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = /\r?\n\r?\n/.exec(buffer))) {
        const block = buffer.slice(0, end.index);
        buffer = buffer.slice(end.index + end[0].length);
        let name = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith(":")) continue; // keep-alive comment
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "event") name = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) yield [name, JSON.parse(data.join("\n"))];
      }
    }
  }

  function duration(seconds) {
    if (seconds < 90) return seconds + (seconds === 1 ? " second" : " seconds");
    return Math.ceil(seconds / 60) + " minutes";
  }

  // A failed request (before any event) as one sentence for the reader.
  async function describeFailure(response) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch { /* not the error shape */ }
    if (response.status === 429) {
      const wait = parseInt(response.headers.get("Retry-After") || "", 10);
      return "You're asking faster than this site allows. Try again in " +
        (wait > 0 ? duration(wait) : "a moment") + ".";
    }
    if (response.status === 401) return "Sign in to chat with this book.";
    if (textFor(error.code)) return textFor(error.code);
    if (response.status >= 500) return TEXT.server + " (error " + response.status + ")";
    return error.message || "The request failed (error " + response.status + ").";
  }

  // --- the interface ------------------------------------------------------------------------
  // h("tag", {attributes, onevent}, ...children): strings become text nodes, never markup.
  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (value === true) el.setAttribute(key, "");
      else if (value !== false && value != null) el.setAttribute(key, value);
    }
    el.append(...children);
    return el;
  }

  const ICON = '<svg viewBox="0 0 24 24" width="26" height="26" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>';

  const CSS = `
    :host { all: initial; }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    .launcher, .panel, .bubble {
      font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
      color: #1c2430; letter-spacing: normal; text-align: left; text-transform: none;
      z-index: 2147483000;
    }
    button { font: inherit; cursor: pointer; }
    :focus-visible { outline: 3px solid #f0a30a; outline-offset: 2px; }
    .launcher {
      position: fixed; right: 20px; bottom: 20px; width: 56px; height: 56px; border: 0;
      border-radius: 50%; background: #2457c5; color: #fff; display: grid; place-items: center;
      box-shadow: 0 6px 20px rgba(20, 40, 90, .35);
    }
    .launcher:hover { background: #1c469f; }
    .panel {
      position: fixed; right: 20px; bottom: 88px; width: min(410px, calc(100vw - 40px));
      height: min(640px, calc(100vh - 110px)); display: flex; flex-direction: column;
      background: #fff; border: 1px solid #d5dbe5; border-radius: 14px; overflow: hidden;
      box-shadow: 0 14px 44px rgba(20, 30, 50, .28);
    }
    header {
      display: flex; align-items: center; gap: 6px; padding: 10px 10px 10px 14px;
      border-bottom: 1px solid #e4e8ee; background: #f7f9fc;
    }
    h2 { flex: 1; margin: 0; font-size: 16px; font-weight: 650; }
    .ghost {
      border: 1px solid transparent; background: none; color: #2457c5; border-radius: 8px;
      padding: 4px 8px; font-size: 14px;
    }
    .ghost:hover { background: #e8eef9; }
    .close { font-size: 22px; line-height: 1; color: #445; padding: 2px 9px; }
    .log {
      flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 10px;
      overscroll-behavior: contain;
    }
    .empty { color: #5b6675; margin: auto 0; text-align: center; font-size: 14px; }
    .msg { max-width: 92%; padding: 8px 12px; border-radius: 12px; overflow-wrap: anywhere; }
    .user { align-self: flex-end; background: #2457c5; color: #fff; white-space: pre-wrap; }
    .bot { align-self: flex-start; background: #f1f4f8; }
    .quote {
      margin: 0 0 6px; padding-left: 8px; border-left: 3px solid rgba(255, 255, 255, .6);
      font-style: italic; max-height: 6.2em; overflow: hidden; white-space: normal;
    }
    .md > :first-child { margin-top: 0; }
    .md > :last-child { margin-bottom: 0; }
    .md p, .md ul, .md ol, .md pre, .md blockquote { margin: 0 0 .6em; }
    .md ul, .md ol { padding-left: 1.3em; }
    .md h3, .md h4, .md h5, .md h6 { margin: .7em 0 .3em; font-size: 15px; }
    .md h3 { font-size: 16px; }
    .md blockquote { border-left: 3px solid #c9d2df; padding-left: 8px; color: #3d4756; }
    code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; }
    .md :not(pre) > code { background: rgba(20, 30, 50, .08); padding: 0 .3em; border-radius: 4px; }
    pre { background: #1e2530; color: #e8edf3; padding: 8px 10px; border-radius: 8px; overflow-x: auto; }
    a { color: #2457c5; }
    .cite { font-size: .78em; font-weight: 650; text-decoration: none; vertical-align: .25em; padding: 0 1px; }
    .typing > .md::after { content: "\\258D"; animation: blink 1s steps(1) infinite; color: #2457c5; }
    @keyframes blink { 50% { opacity: 0; } }
    .sources { margin: 8px 0 0; padding: 8px 0 0 1.3em; border-top: 1px solid #dbe1e9; font-size: 13px; }
    .sources li { margin: 2px 0; }
    .meta { margin: 6px 0 0; font-size: 12px; color: #5b6675; }
    .notice {
      margin: 0 12px 8px; padding: 8px 10px; border-radius: 8px; background: #fdecec;
      color: #8a1c1c; font-size: 14px;
    }
    form { display: flex; gap: 8px; padding: 10px 12px 12px; border-top: 1px solid #e4e8ee; align-items: flex-end; }
    textarea {
      flex: 1; resize: none; font: inherit; font-size: 16px; line-height: 1.4; color: inherit;
      padding: 8px 10px; border: 1px solid #c5ccd8; border-radius: 10px; max-height: 9em; background: #fff;
    }
    textarea:focus-visible { outline: 0; border-color: #2457c5; box-shadow: 0 0 0 3px rgba(36, 87, 197, .25); }
    .primary {
      border: 0; border-radius: 10px; padding: 9px 14px; background: #2457c5; color: #fff; font-weight: 600;
    }
    .primary:disabled { background: #9aaed6; cursor: default; }
    .stop { background: #8a1c1c; }
    .bubble {
      position: fixed; padding: 6px 12px; border: 0; border-radius: 999px; background: #1c2430;
      color: #fff; font-size: 14px; box-shadow: 0 4px 14px rgba(0, 0, 0, .3); z-index: 2147483001;
    }
    .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
    @media (max-width: 600px) {
      .panel { inset: 0; width: 100%; height: 100%; border: 0; border-radius: 0; }
    }
    @media (prefers-reduced-motion: reduce) { .typing > .md::after { animation: none; } }
  `;

  function addStyles(root) {
    // Constructed stylesheets work under a strict host CSP (no 'unsafe-inline' for styles).
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch {
      root.append(h("style", {}, CSS));
    }
  }

  function start() {
    // A custom element name: host-page rules for div, section... never match the host.
    const host = h("bookchat-widget");
    const root = host.attachShadow({ mode: "open" });
    addStyles(root);

    const launcher = h("button", {
      class: "launcher", type: "button", "aria-label": "Open the chat: " + TITLE,
      "aria-expanded": "false", "aria-controls": "panel",
    });
    launcher.innerHTML = ICON; // a constant, no data
    const log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation", tabindex: "0" });
    const notice = h("p", { class: "notice", role: "alert", hidden: true });
    const input = h("textarea", {
      id: "question", rows: "2", maxlength: "2000", placeholder: "Ask a question about the book",
      enterkeyhint: "send",
    });
    const send = h("button", { class: "primary send", type: "submit" }, "Send");
    const stop = h("button", { class: "primary stop", type: "button", hidden: true, "aria-label": "Stop the answer" }, "Stop");
    const newChat = h("button", { class: "ghost", type: "button" }, "New chat");
    const close = h("button", { class: "ghost close", type: "button", "aria-label": "Close the chat" }, "\u00d7");
    const form = h("form", {}, h("label", { class: "sr", for: "question" }, "Your question"), input, send, stop);
    const panel = h("section", { id: "panel", class: "panel", role: "dialog", "aria-labelledby": "title", hidden: true },
      h("header", {}, h("h2", { id: "title" }, TITLE), newChat, close), log, notice, form);
    const bubble = h("button", { class: "bubble", type: "button", hidden: true }, "Ask about this");
    root.append(launcher, panel, bubble);
    document.body.append(host);

    let session = store.get("session");
    let historyLoad = null; // the promise of the history request, once made
    let busy = null; // the AbortController of the answer being streamed
    let selection = ""; // the text the bubble would ask about

    const say = (text) => {
      notice.textContent = text || "";
      notice.hidden = !text;
    };
    const setSession = (id) => {
      session = id;
      store.set("session", id);
    };
    const scrollDown = () => { log.scrollTop = log.scrollHeight; };
    const emptyState = () => log.replaceChildren(h("p", { class: "empty" },
      "Ask anything about this book, or select a passage on the page and choose \u201cAsk about this\u201d."));

    function setOpen(open, moveFocus = true) {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", (open ? "Close" : "Open") + " the chat: " + TITLE);
      store.set("open", open ? "1" : null);
      if (open) {
        loadHistory();
        scrollDown();
        if (moveFocus) input.focus();
      } else if (moveFocus) {
        launcher.focus();
      }
    }

    function userMessage(text, quote) {
      log.querySelector(".empty")?.remove();
      const el = h("div", { class: "msg user" });
      if (quote) el.append(h("blockquote", { class: "quote", "aria-label": "Selected passage" }, quote));
      el.append(text);
      log.append(el);
      scrollDown();
      return el;
    }

    // An answer bubble; update() re-renders the Markdown (at most once a frame while streaming).
    function botMessage() {
      const body = h("div", { class: "md" });
      const el = h("div", { class: "msg bot" }, body);
      let frame = 0;
      let state = { text: "", citations: [] };
      log.append(el);
      const render = () => {
        frame = 0;
        // Follow the answer down, unless the reader scrolled up to read something.
        const following = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
        // Safe: markdown() escapes all of the text before adding any tag.
        body.innerHTML = markdown(state.text, state.citations);
        if (following) scrollDown();
      };
      return {
        el,
        // While it streams, the text's [n] already has its final number, but which source it
        // names arrives with `done`: markers stay plain text until then.
        update(text) {
          state = { text, citations: [] };
          if (!frame) frame = requestAnimationFrame(render);
        },
        finish(answer, note) {
          if (frame) cancelAnimationFrame(frame);
          state = { text: answer.response || answer.content || "", citations: answer.citations || [] };
          render();
          el.classList.remove("typing");
          const cited = state.citations.filter((c) => c.cited);
          const seen = new Set(); // two passages of one section: listed once
          const shown = (cited.length ? cited : state.citations).filter((c) =>
            sourceUrl(c) && !seen.has(sourceUrl(c)) && seen.add(sourceUrl(c)));
          if (shown.length && answer.mode !== "selected_text") { // a selection is its own source
            el.append(h("ol", { class: "sources", "aria-label": "Sources" }, ...shown.map((c) =>
              h("li", { value: String(c.index) }, h("a", { href: sourceUrl(c) }, c.title + (c.section ? " \u203a " + c.section : ""))))));
          }
          const meta = note || (answer.mode === "selected_text" ? "Answered from the selected passage."
            : answer.model === "extractive" ? "Offline answer: sentences quoted from the book." : "");
          if (meta) el.append(h("p", { class: "meta" }, meta));
          scrollDown();
        },
      };
    }

    // At most once per page, and only for a conversation begun on an earlier page.
    function loadHistory() {
      if (historyLoad) return historyLoad;
      if (!session) return (historyLoad = Promise.resolve());
      const id = session;
      historyLoad = (async () => {
        try {
          const response = await fetch(API + "/api/v1/chat/history/" + encodeURIComponent(id) + "?limit=50",
            { headers: { Accept: "application/json" } });
          if (response.status === 404) { // deleted, or never stored: start afresh
            if (session === id) setSession(null);
            return;
          }
          if (!response.ok) throw new Error(String(response.status));
          const history = await response.json();
          if (session !== id || log.querySelector(".msg")) return; // a new chat began meanwhile
          for (const message of history.messages) {
            if (message.role === "user") userMessage(message.content, message.selected_text);
            else if (message.role === "assistant") {
              const note = message.status === "error" ? "Interrupted by an error." : cutNote(message);
              botMessage().finish(message, note);
            }
          }
        } catch {
          say(TEXT.history);
        }
      })();
      return historyLoad;
    }

    function setBusy(controller) {
      busy = controller;
      send.hidden = Boolean(controller);
      stop.hidden = !controller;
      log.setAttribute("aria-busy", String(Boolean(controller)));
      if (!controller && !panel.hidden && root.activeElement === stop) input.focus();
    }

    function pageContext() {
      // Docusaurus (and the demo) name the page's canonical URL; else the address bar.
      const canonical = document.querySelector("link[rel='canonical']");
      return ((canonical && canonical.href) || location.href).split("#")[0].slice(0, 2048);
    }

    async function ask(question, quote) {
      question = question.trim();
      if (!question || busy) return;
      setOpen(true, false);
      await loadHistory();
      say("");
      if (navigator.onLine === false) return say(TEXT.offline);
      input.value = "";
      const asked = userMessage(question, quote);
      const answer = botMessage();
      answer.el.classList.add("typing");
      const controller = new AbortController();
      setBusy(controller);
      let text = "";
      let ended = false;
      const undo = (message) => { // nothing was stored: give the question back to retry
        asked.remove();
        answer.el.remove();
        if (!log.querySelector(".msg")) emptyState();
        if (!quote) input.value = question;
        say(message);
      };
      try {
        const response = await fetch(API + "/api/v1/chat/stream", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify({ message: question, session_id: session || undefined,
            selected_text: quote || undefined, page_context: pageContext() }),
          signal: controller.signal,
        });
        if (!response.ok || !response.body) return undo(await describeFailure(response));
        for await (const [name, data] of readEvents(response.body)) {
          // `sources` (the passages found, unnumbered) is not shown: `done` lists the sources
          // under the numbers the answer uses.
          if (name === "start") setSession(data.session_id);
          else if (name === "token") answer.update((text += data.text));
          else if (name === "done") {
            ended = true;
            answer.finish(data, cutNote(data));
          } else if (name === "error") {
            ended = true;
            answer.finish({ response: text }, "Interrupted by an error.");
            say(textFor(data.code) || TEXT.server);
          }
        }
        if (!ended) {
          answer.finish({ response: text }, "Cut off.");
          say(TEXT.cut);
        }
      } catch (error) {
        if (controller.signal.aborted) answer.finish({ response: text }, "Stopped.");
        else if (!text) undo(navigator.onLine === false ? TEXT.offline : TEXT.unreachable);
        else {
          answer.finish({ response: text }, "Cut off.");
          say(navigator.onLine === false ? TEXT.offline : TEXT.cut);
        }
      } finally {
        setBusy(null);
      }
    }

    // --- wiring ---
    launcher.addEventListener("click", () => setOpen(panel.hidden));
    close.addEventListener("click", () => setOpen(false));
    stop.addEventListener("click", () => busy && busy.abort());
    newChat.addEventListener("click", () => {
      if (busy) busy.abort();
      setSession(null);
      say("");
      emptyState();
      input.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      ask(input.value);
    });
    input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter is a new line; never in the middle of an IME composition.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        ask(input.value);
      }
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") setOpen(false);
    });
    addEventListener("offline", () => say(TEXT.offline));
    addEventListener("online", () => { if (notice.textContent === TEXT.offline) say(""); });

    // --- "Ask about this" next to a selection inside the page's text ---
    function placeBubble() {
      const sel = document.getSelection();
      const text = sel && sel.rangeCount && !sel.isCollapsed ? sel.toString().trim() : "";
      const range = text && sel.getRangeAt(0);
      // Where the selection starts decides: a triple-click may end it past the content.
      const node = range && range.startContainer;
      const el = node && (node.nodeType === 1 ? node : node.parentElement);
      if (!el || !el.closest(SCOPE) || el.closest("bookchat-widget")) {
        bubble.hidden = true;
        return;
      }
      selection = text;
      const rect = range.getBoundingClientRect();
      bubble.hidden = false;
      const width = bubble.offsetWidth;
      const height = bubble.offsetHeight;
      let top = rect.top - height - 8;
      if (top < 8) top = Math.min(rect.bottom + 8, innerHeight - height - 8);
      const left = Math.max(8, Math.min(rect.left + rect.width / 2 - width / 2, innerWidth - width - 8));
      bubble.style.top = top + "px";
      bubble.style.left = left + "px";
    }
    let pending = 0;
    const later = () => {
      clearTimeout(pending);
      pending = setTimeout(placeBubble, 120); // wait for the selection to settle
    };
    document.addEventListener("selectionchange", later);
    addEventListener("scroll", later, { passive: true });
    addEventListener("resize", later);
    // Keep the page's selection when the bubble is pressed.
    bubble.addEventListener("mousedown", (event) => event.preventDefault());
    bubble.addEventListener("click", () => {
      bubble.hidden = true;
      ask(SELECTION_QUESTION, selection);
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") bubble.hidden = true;
    });

    // A small API for sites that want their own buttons.
    window.BookChat = {
      open: () => setOpen(true),
      close: () => setOpen(false),
      ask: (question, selectedText) => ask(String(question), selectedText ? String(selectedText) : ""),
    };

    emptyState();
    // The panel was open before this page loaded (a reload, or a citation followed): reopen.
    if (store.get("open")) setOpen(true, false);
  }

  window.BookChat = {}; // claimed now, so a second copy of this script stops at the top
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();
