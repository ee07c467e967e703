/*
 * bookchat widget: chat with the book from any page, with one line of HTML:
 *
 *   <script src="https://api.example.org/widget.js" data-api="https://api.example.org" defer></script>
 *
 * Attributes (all optional): data-api (the bookchat server; default: where this script came
 * from), data-title (the panel's title), data-content (CSS selector of the page's text, where
 * selecting a passage offers "Ask about this"; default: article, main, [role=main], .markdown),
 * data-token (the signed-in reader's bearer token), data-reflow ("none": the open panel never
 * narrows the page), data-book (a book's slug on a server with several: its routes,
 * /api/v1/books/{slug}/..., instead of the default book's /api/v1/...).
 *
 * window.bookchat: open(), close(), ask(question, selectedText?), setToken(token | null) and
 * setTokenProvider(async ({refresh}) => token | null) for tokens that expire (asked before each
 * request, and again with refresh: true after a 401). docs/widget.md has the details.
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
  const BOOK = option("book");
  // Every API path below is ROUTES + "/chat/..."; a book's own routes when data-book names one.
  const ROUTES = "/api/v1" + (BOOK ? "/books/" + encodeURIComponent(BOOK) : "");
  const TITLE = option("title") || "Ask the book";
  const SCOPE = option("content") || "article, main, [role='main'], .markdown";
  const REFLOW = option("reflow") !== "none";
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
    expired: "Your sign-in has expired. Sign in again, then retry.",
    sessions: "Couldn't load your conversations.",
    noSessions: "No conversations yet.",
    thanks: "Thanks for the feedback.",
    noted: "Thanks, your comment was sent.",
    gone: "This answer is no longer stored, so it can't be rated.",
  };
  // What a stored or streamed answer that stopped before its end is labelled with.
  const cutNote = (message) => message.status !== "partial" ? ""
    : message.finish_reason === "length" ? "Cut at the answer's length limit."
    : message.finish_reason === "content_filter" ? "Cut by the model's content filter."
    : "Stopped before the end.";
  const textFor = (code) => (typeof code === "string" && Object.hasOwn(TEXT, code) ? TEXT[code] : "");

  // --- storage: the conversation id and whether the panel was open, per server and book ------
  // localStorage can throw (blocked cookies, sandboxed frames): the widget then just forgets.
  // A book's conversations are its own: kept apart from the default book's on the same server.
  const storeKey = (key) => "bookchat:" + API + (BOOK ? "/books/" + BOOK : "") + ":" + key;
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
  // The reader's own ratings, by answer id, so a reload shows the thumb they pressed (the
  // newest 200); a history page's `own_feedback` (the server's record) takes precedence.
  const ratings = {
    all() {
      try { return JSON.parse(store.get("ratings") || "{}") || {}; } catch { return {}; }
    },
    get(id) { return this.all()[id] || 0; },
    set(id, rating) {
      const all = this.all();
      delete all[id];
      all[id] = rating; // insertion order: the newest last
      const ids = Object.keys(all);
      for (const old of ids.slice(0, Math.max(0, ids.length - 200))) delete all[old];
      store.set("ratings", JSON.stringify(all));
    },
  };

  // --- who is reading: the host page's bearer token -------------------------------------------
  // A fixed token (data-token, setToken) or a provider asked before each request, so a token
  // that expires and is refreshed by the host's auth client is always the current one.
  let token = option("token") || null;
  let provider = null;
  let ui = null; // the started widget
  const waiting = []; // calls made before it started
  const whenUp = (call) => (ui ? call(ui) : waiting.push(call));

  // Whose conversations the widget holds: the token's issuer and subject (read, not verified:
  // the server verifies; this only tells one reader from the next). null: nobody signed in.
  function readerOf(value) {
    if (!value) return null;
    try {
      const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
      return typeof claims.sub === "string" ? (claims.iss || "") + " " + claims.sub : "?";
    } catch {
      return "?"; // not a JWT: one unnamed reader
    }
  }

  function useToken(value) {
    token = value ? String(value) : null;
    const reader = readerOf(token);
    whenUp((widget) => widget.setReader(reader));
  }

  // The token for the next request; `refresh` after the server refused the last one.
  async function currentToken(refresh) {
    if (provider) {
      const asked = provider;
      try {
        const value = await asked({ refresh });
        if (provider === asked) useToken(value);
      } catch { /* the host's provider failed: keep the token we have */ }
    }
    return token;
  }

  // fetch() on the API with the reader's token; a 401 is retried once with a fresh token from
  // the provider. Resolves to the response and the token it was sent with.
  async function call(path, init = {}) {
    const send = (used) => fetch(API + path, {
      ...init, headers: used ? { ...init.headers, Authorization: "Bearer " + used } : init.headers,
    });
    let used = await currentToken(false);
    let response = await send(used);
    if (response.status === 401 && provider) {
      const fresh = await currentToken(true);
      if (fresh && fresh !== used) response = await send((used = fresh));
    }
    return { response, token: used };
  }

  // --- Markdown, safely -------------------------------------------------------------------
  // Every character of the answer is escaped first; only then do the patterns below add
  // tags, and the only attribute values they write are constants (a table's classes) and URLs
  // that passed safeUrl (escaped again). So model output can never become markup of its own.
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

  // GitHub's pipe tables. A row's cells: split at each | but an escaped \| (a literal |).
  const cells = (line) => line.trim().replace(/\\\|/g, "\0").replace(/^\||\|$/g, "").split("|")
    .map((cell) => cell.trim().replace(/\0/g, "|"));
  // A line that opens another block (heading, quote, fence) ends a table, pipes or not.
  const BLOCK_START = /^\s{0,3}(#{1,6}\s|>|`{3,}|~{3,})/;
  const ALIGN = { "::": ' class="center"', ":-": ' class="left"', "-:": ' class="right"' };
  // Each column's class, from the delimiter row under a header of `count` cells; null if the
  // line is not one. `arriving`: a streaming answer's last line, so a cut one (|---|:-) counts.
  function delimiter(line = "", count, arriving) {
    const marks = cells(line);
    const fits = arriving ? marks.length <= count : marks.length === count && line.includes("|");
    if (!fits || !/^[\s|:-]*-[\s|:-]*$/.test(line) ||
      !marks.every((mark, i) => /^:?-+:?$/.test(mark) || (arriving && i === marks.length - 1))) return null;
    return Array.from({ length: count }, (_, i) => ALIGN[(marks[i] || "-")[0] + (marks[i] || "-").slice(-1)] || "");
  }

  // `streaming`: the source is an answer still arriving, its last line perhaps cut short.
  function markdown(source, citations = [], streaming = false) {
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
      } else if (line.includes("|") && (m = delimiter(lines[i + 1], cells(line).length, streaming && i + 2 === lines.length))) {
        flush();
        closeList();
        // Rows run to a line without a pipe or one that opens another block; short ones are
        // filled up, long ones cut. The wrapper scrolls sideways, so a wide table never widens
        // the panel.
        const row = (tag, texts) => "<tr>" + m.map((align, n) =>
          "<" + tag + align + ">" + inline(texts[n] || "", citations) + "</" + tag + ">").join("") + "</tr>";
        let rows = "";
        for (i += 2; lines[i]?.includes("|") && !BLOCK_START.test(lines[i]); i++) rows += row("td", cells(lines[i]));
        out.push('<div class="table" tabindex="0"><table><thead>' + row("th", cells(line)) + "</thead>" +
          (rows && "<tbody>" + rows + "</tbody>") + "</table></div>");
        i--;
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
    try {
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
    } finally {
      reader.cancel().catch(() => {}); // a reader that stops early lets the connection go
    }
  }

  function duration(seconds) {
    if (seconds < 90) return seconds + (seconds === 1 ? " second" : " seconds");
    return Math.ceil(seconds / 60) + " minutes";
  }

  // A failed request (before any event) as one sentence for the reader.
  async function describeFailure(response, withToken) {
    let error = {};
    try { error = (await response.json()).error || {}; } catch { /* not the error shape */ }
    if (response.status === 429) {
      const wait = parseInt(response.headers.get("Retry-After") || "", 10);
      return "You're asking faster than this site allows. Try again in " +
        (wait > 0 ? duration(wait) : "a moment") + ".";
    }
    if (response.status === 401) return withToken ? TEXT.expired : "Sign in to chat with this book.";
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
      position: fixed; right: 20px; bottom: 88px; width: min(var(--width, 410px), calc(100vw - 40px));
      height: min(640px, calc(100vh - 110px)); display: flex; flex-direction: column;
      background: #fff; border: 1px solid #d5dbe5; border-radius: 14px; overflow: hidden;
      box-shadow: 0 14px 44px rgba(20, 30, 50, .28);
    }
    .resize {
      position: absolute; left: 0; top: 0; bottom: 0; width: 8px; cursor: ew-resize;
      touch-action: none; z-index: 1;
    }
    .resize:hover, .resize:focus-visible { background: rgba(36, 87, 197, .22); outline-offset: -3px; }
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
      font-style: italic; white-space: normal; overflow: hidden;
      /* A long passage shows its first four lines, ending in an ellipsis where it is cut. */
      display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 4;
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
    .md .table { margin: 0 0 .6em; overflow-x: auto; }
    .md table { border-collapse: collapse; font-size: 14px; }
    /* Words stay whole and columns keep 6em: a wide table scrolls rather than squeezes. */
    .md th, .md td { padding: 4px 8px; border: 1px solid #d5dbe5; text-align: left; vertical-align: top; min-width: 6em; overflow-wrap: normal; }
    .md th { background: #e6ebf2; font-weight: 650; }
    .md td { background: #fff; }
    .md .center { text-align: center; }
    .md .right { text-align: right; }
    a { color: #2457c5; }
    .cite { font-size: .78em; font-weight: 650; text-decoration: none; vertical-align: .25em; padding: 0 1px; }
    .typing > .md::after { content: "\\258D"; animation: blink 1s steps(1) infinite; color: #2457c5; }
    @keyframes blink { 50% { opacity: 0; } }
    .sources { margin: 8px 0 0; padding: 8px 0 0 1.3em; border-top: 1px solid #dbe1e9; font-size: 13px; }
    .sources li { margin: 2px 0; }
    .meta { margin: 6px 0 0; font-size: 12px; color: #5b6675; }
    .rating { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; margin: 6px 0 0; font-size: 13px; color: #5b6675; }
    .thumb {
      display: inline-grid; place-items: center; width: 30px; height: 28px; border: 1px solid #c9d2df;
      border-radius: 8px; background: #fff; color: #445;
    }
    .thumb:hover { background: #e8eef9; }
    .thumb[aria-pressed="true"] { background: #2457c5; border-color: #2457c5; color: #fff; }
    .thumb:disabled { opacity: .6; cursor: default; }
    .said { margin-left: 4px; }
    .said.error { color: #8a1c1c; }
    .comment { display: flex; gap: 6px; width: 100%; margin-top: 4px; }
    .comment input {
      flex: 1; min-width: 0; font: inherit; font-size: 14px; color: inherit; padding: 4px 8px;
      border: 1px solid #c5ccd8; border-radius: 8px; background: #fff;
    }
    .sessions {
      max-height: 45%; overflow-y: auto; border-bottom: 1px solid #e4e8ee; background: #fbfcfe;
      padding: 6px 8px 8px; flex: none;
    }
    .sessions h3 { margin: 4px 6px 6px; font-size: 13px; font-weight: 650; color: #5b6675; }
    .sessions ul { list-style: none; margin: 0; padding: 0; }
    .sessions p { margin: 4px 6px; font-size: 14px; color: #5b6675; }
    .session {
      display: block; width: 100%; text-align: left; border: 0; background: none; color: inherit;
      border-radius: 8px; padding: 6px 8px; font-size: 14px;
    }
    .session:hover { background: #e8eef9; }
    .session[aria-current="true"] { background: #e3ebfb; font-weight: 600; }
    .session span { display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    .session .when { font-size: 12px; font-weight: 400; color: #5b6675; }
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
      .resize { display: none; }
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

  // The page beside the open panel: while it is open on a wide screen, the widget marks <html>
  // with data-bookchat-panel="open" and --bookchat-panel-space (the panel's width and margins),
  // and this rule narrows the page by that much so no text is hidden under the panel. A site
  // that lays itself out differently sets data-reflow="none" (no rule) and uses the two itself.
  const PAGE_CSS = "html[data-bookchat-panel='open'] body { margin-right: var(--bookchat-panel-space) !important; }";
  const REFLOW_MIN_PAGE = 760; // px the page must keep beside the panel, else the panel overlays
  const MIN_WIDTH = 320;
  const DEFAULT_WIDTH = 410;

  function addPageStyles() {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(PAGE_CSS);
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
    } catch {
      document.head.append(h("style", {}, PAGE_CSS));
    }
  }

  // A thumb drawn for this widget; the "down" one is the same shape turned over.
  const THUMB = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"><path d="M3 10h4v10H3z"/><path d="M7 10l4-7c1.5 0 2.6 1.2 2.2 2.7L12.5 9H19a2 2 0 0 1 2 2.3l-1.3 7A2 2 0 0 1 17.7 20H7"/></svg>';
  // An SVG transform, not a style: a strict style-src would block an inline style attribute.
  const THUMB_DOWN = THUMB.replace(/(<path.*)<\/svg>/, '<g transform="rotate(180 12 12)">$1</g></svg>');

  function start() {
    // A custom element name: host-page rules for div, section... never match the host.
    const host = h("bookchat-widget");
    const root = host.attachShadow({ mode: "open" });
    addStyles(root);
    if (REFLOW) addPageStyles();

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
    const historyButton = h("button", {
      class: "ghost history", type: "button", hidden: true, "aria-expanded": "false", "aria-controls": "sessions",
    }, "History");
    const newChat = h("button", { class: "ghost", type: "button" }, "New chat");
    const close = h("button", { class: "ghost close", type: "button", "aria-label": "Close the chat" }, "\u00d7");
    const sessionList = h("div");
    const sessions = h("div", { id: "sessions", class: "sessions", role: "region", "aria-labelledby": "sessions-title", hidden: true },
      h("h3", { id: "sessions-title" }, "Your conversations"), sessionList);
    const resize = h("div", {
      class: "resize", role: "separator", tabindex: "0", "aria-orientation": "vertical",
      "aria-label": "Resize the chat panel", "aria-controls": "panel",
    });
    const form = h("form", {}, h("label", { class: "sr", for: "question" }, "Your question"), input, send, stop);
    const panel = h("section", { id: "panel", class: "panel", role: "dialog", "aria-labelledby": "title", hidden: true },
      h("header", {}, h("h2", { id: "title" }, TITLE), historyButton, newChat, close), sessions, log, notice, form, resize);
    const bubble = h("button", { class: "bubble", type: "button", hidden: true }, "Ask about this");
    root.append(launcher, panel, bubble);
    document.body.append(host);

    let session = store.get("session");
    let historyLoad = null; // the promise of the history request, once made
    let awaitingReader = false; // the history is the reader's, and their token is not known yet
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

    // --- the panel's width, and the page beside it ---
    const maxWidth = () => Math.max(MIN_WIDTH, Math.min(720, innerWidth - 40));
    let width = Math.min(maxWidth(), Math.max(MIN_WIDTH, Number(store.get("width")) || DEFAULT_WIDTH));

    function reflow() {
      const space = width + 20 + 16; // the panel, its margin from the edge, a gap before it
      const page = document.documentElement;
      if (!panel.hidden && innerWidth > 600 && innerWidth - space >= REFLOW_MIN_PAGE) {
        page.style.setProperty("--bookchat-panel-space", space + "px");
        page.setAttribute("data-bookchat-panel", "open");
      } else {
        page.removeAttribute("data-bookchat-panel");
        page.style.removeProperty("--bookchat-panel-space");
      }
    }

    function setWidth(value, remember) {
      width = Math.round(Math.min(maxWidth(), Math.max(MIN_WIDTH, value)));
      panel.style.setProperty("--width", width + "px");
      resize.setAttribute("aria-valuenow", String(width));
      resize.setAttribute("aria-valuemin", String(MIN_WIDTH));
      resize.setAttribute("aria-valuemax", String(maxWidth()));
      resize.setAttribute("aria-valuetext", width + " pixels wide");
      if (remember) store.set("width", String(width));
      reflow();
    }

    function setOpen(open, moveFocus = true) {
      panel.hidden = !open;
      launcher.setAttribute("aria-expanded", String(open));
      launcher.setAttribute("aria-label", (open ? "Close" : "Open") + " the chat: " + TITLE);
      store.set("open", open ? "1" : null);
      reflow();
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

    // Thumbs up and down under a finished answer, then an optional comment. Sending again
    // replaces the reader's earlier rating (one per answer per reader, on the server).
    function ratingBar(id, own) {
      if (own) ratings.set(id, own.rating); // rated on another device, or changed there
      let rating = own ? own.rating : ratings.get(id);
      const said = h("span", { class: "said", role: "status" });
      const thumb = (value, label) => {
        const button = h("button", { class: "thumb", type: "button", "aria-label": label, title: label });
        button.innerHTML = value > 0 ? THUMB : THUMB_DOWN; // constants, no data
        button.addEventListener("click", () => choose(value));
        return button;
      };
      const up = thumb(1, "Helpful");
      const down = thumb(-1, "Not helpful");
      const text = h("input", { type: "text", maxlength: "2000", "aria-label": "Comment (optional)" });
      const comment = h("form", { class: "comment", hidden: true }, text,
        h("button", { class: "ghost", type: "submit" }, "Send"));
      const bar = h("div", { class: "rating", role: "group", "aria-label": "Rate this answer" },
        "Helpful?", up, down, said, comment);
      const show = () => {
        up.setAttribute("aria-pressed", String(rating === 1));
        down.setAttribute("aria-pressed", String(rating === -1));
      };
      const tell = (message, error) => {
        said.textContent = message;
        said.classList.toggle("error", Boolean(error));
      };

      async function send(value, note) {
        up.disabled = down.disabled = true;
        tell("");
        try {
          const { response, token: used } = await call(ROUTES + "/chat/messages/" + encodeURIComponent(id) + "/feedback", {
            method: "POST",
            headers: { "Content-Type": "application/json", Accept: "application/json" },
            body: JSON.stringify(note ? { rating: value, comment: note } : { rating: value }),
          });
          if (!response.ok) {
            tell(response.status === 404 ? TEXT.gone : await describeFailure(response, used), true);
            return false;
          }
          rating = value;
          ratings.set(id, value);
          show();
          tell(note ? TEXT.noted : TEXT.thanks);
          return true;
        } catch {
          tell(navigator.onLine === false ? TEXT.offline : TEXT.unreachable, true);
          return false;
        } finally {
          up.disabled = down.disabled = false;
        }
      }

      async function choose(value) {
        if (value !== rating && !(await send(value))) return;
        text.placeholder = value > 0 ? "What helped? (optional)" : "What was wrong or missing? (optional)";
        comment.hidden = false;
      }
      comment.addEventListener("submit", async (event) => {
        event.preventDefault();
        const note = text.value.trim();
        if (note && (await send(rating, note))) {
          text.value = "";
          comment.hidden = true;
        }
      });
      show();
      return bar;
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
        body.innerHTML = markdown(state.text, state.citations, state.streaming);
        if (following) scrollDown();
      };
      return {
        el,
        // While it streams, the text's [n] already has its final number, but which source it
        // names arrives with `done`: markers stay plain text until then.
        update(text) {
          state = { text, citations: [], streaming: true };
          if (!frame) frame = requestAnimationFrame(render);
        },
        // `rateable`: a stored answer the server finished (never one stopped, cut or failed).
        finish(answer, note, rateable = false) {
          if (frame) cancelAnimationFrame(frame);
          state = { text: answer.response || answer.content || "", citations: answer.citations || [] };
          render();
          el.classList.remove("typing");
          // The sources the answer cites: one that cites none (the model found nothing in its
          // passages) lists none, rather than passages it did not come from.
          const seen = new Set(); // two passages of one section: listed once
          const shown = state.citations.filter((c) => c.cited &&
            sourceUrl(c) && !seen.has(sourceUrl(c)) && seen.add(sourceUrl(c)));
          if (shown.length && answer.mode !== "selected_text") { // a selection is its own source
            el.append(h("ol", { class: "sources", "aria-label": "Sources" }, ...shown.map((c) =>
              h("li", { value: String(c.index) }, h("a", { href: sourceUrl(c) }, c.title + (c.section ? " \u203a " + c.section : ""))))));
          }
          const meta = note || (answer.mode === "selected_text" ? "Answered from the selected passage."
            : answer.model === "extractive" ? "Offline answer: sentences quoted from the book." : "");
          if (meta) el.append(h("p", { class: "meta" }, meta));
          const id = answer.message_id || answer.id;
          if (rateable && id) el.append(ratingBar(String(id), answer.own_feedback));
          scrollDown();
        },
      };
    }

    // Once per conversation shown: the one begun on an earlier page, or one picked in History.
    function loadHistory() {
      if (historyLoad) return historyLoad;
      if (!session) return (historyLoad = Promise.resolve());
      const id = session;
      historyLoad = (async () => {
        try {
          const { response, token: used } = await call(
            ROUTES + "/chat/history/" + encodeURIComponent(id) + "?limit=50", { headers: { Accept: "application/json" } });
          if ((response.status === 404 || response.status === 401) && !used && store.get("reader")) {
            // A signed-in reader's conversation, asked for before the host page gave their
            // token: kept, and loaded when the token comes.
            awaitingReader = true;
            historyLoad = null;
            return;
          }
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
              const failed = message.status === "error";
              botMessage().finish(message, failed ? "Interrupted by an error." : cutNote(message), !failed);
            }
          }
        } catch {
          say(TEXT.history);
        }
      })();
      return historyLoad;
    }

    // Start from an empty conversation (New chat, another reader, a conversation picked).
    function clearConversation() {
      if (busy) busy.abort();
      say("");
      historyLoad = null;
      emptyState();
    }

    // --- the signed-in reader's conversations (History) ---
    function closeSessions(moveFocus) {
      sessions.hidden = true;
      historyButton.setAttribute("aria-expanded", "false");
      if (moveFocus) historyButton.focus();
    }

    async function openSessions() {
      sessions.hidden = false;
      historyButton.setAttribute("aria-expanded", "true");
      sessionList.replaceChildren(h("p", {}, "Loading\u2026"));
      let items;
      try {
        const { response, token: used } = await call(ROUTES + "/chat/sessions?limit=20", { headers: { Accept: "application/json" } });
        if (!response.ok) {
          sessionList.replaceChildren(h("p", {}, response.status === 401 && used ? TEXT.expired : TEXT.sessions));
          return;
        }
        items = (await response.json()).items;
      } catch {
        sessionList.replaceChildren(h("p", {}, navigator.onLine === false ? TEXT.offline : TEXT.sessions));
        return;
      }
      if (!items.length) {
        sessionList.replaceChildren(h("p", {}, TEXT.noSessions));
        return;
      }
      const when = (stamp) => new Date(stamp).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      sessionList.replaceChildren(h("ul", {}, ...items.map((item) => h("li", {},
        h("button", {
          class: "session", type: "button", "aria-current": item.id === session ? "true" : false,
          onclick: () => showSession(item.id),
        }, h("span", {}, item.title || "Untitled conversation"), h("span", { class: "when" }, when(item.updated_at)))))));
      sessionList.querySelector("button").focus();
    }

    function showSession(id) {
      closeSessions(false);
      clearConversation();
      setSession(id);
      log.replaceChildren();
      loadHistory().then(() => { if (!log.querySelector(".msg, .empty")) emptyState(); });
      input.focus();
    }

    // A reader signed in, out, or changed (null: nobody). Another reader's conversation, or
    // the signed-out reader's, never stays on screen or in storage.
    function setReader(reader) {
      historyButton.hidden = reader === null;
      if (reader === null) closeSessions(false);
      const previous = store.get("reader");
      if (reader !== previous) {
        store.set("reader", reader);
        if (previous !== null) {
          setSession(null);
          store.set("ratings", null);
          sessionList.replaceChildren();
          clearConversation();
        }
      }
      if (reader !== null && awaitingReader) {
        awaitingReader = false;
        if (!panel.hidden) loadHistory();
      }
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
      const post = () => call(ROUTES + "/chat/stream", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify({ message: question, session_id: session || undefined,
          selected_text: quote || undefined, page_context: pageContext() }),
        signal: controller.signal,
      });
      try {
        let { response, token: used } = await post();
        if (response.status === 404 && session) {
          // The stored conversation is another reader's (whoever signed out without telling
          // the widget): this question starts a new one.
          setSession(null);
          ({ response, token: used } = await post());
        }
        if (!response.ok || !response.body) return undo(await describeFailure(response, used));
        for await (const [name, data] of readEvents(response.body)) {
          // `sources` (the passages found, unnumbered) is not shown: `done` lists the sources
          // under the numbers the answer uses.
          if (name === "start") setSession(data.session_id);
          else if (name === "token") answer.update((text += data.text));
          else if (name === "done") {
            ended = true;
            answer.finish(data, cutNote(data), true);
          } else if (name === "error") {
            ended = true;
            answer.finish({ response: text }, "Interrupted by an error.");
            say(textFor(data.code) || TEXT.server);
          }
          // The turn is over with its last event, not when the connection closes (a proxy
          // may hold it open): the reader can ask again at once.
          if (ended) break;
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
        if (busy === controller) setBusy(null);
      }
    }

    // --- wiring ---
    launcher.addEventListener("click", () => setOpen(panel.hidden));
    close.addEventListener("click", () => setOpen(false));
    stop.addEventListener("click", () => busy && busy.abort());
    newChat.addEventListener("click", () => {
      closeSessions(false);
      clearConversation();
      setSession(null);
      input.focus();
    });
    historyButton.addEventListener("click", () => (sessions.hidden ? openSessions() : closeSessions(true)));
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
      if (event.key !== "Escape") return;
      if (!sessions.hidden && sessions.contains(root.activeElement)) closeSessions(true);
      else setOpen(false);
    });
    addEventListener("offline", () => say(TEXT.offline));
    addEventListener("online", () => { if (notice.textContent === TEXT.offline) say(""); });

    // The resize handle: dragged, or arrow keys (left widens: the handle is the left edge).
    resize.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      resize.setPointerCapture(event.pointerId);
      const [startX, startWidth] = [event.clientX, width]; // no jump where the handle is grabbed
      const move = (e) => setWidth(startWidth + startX - e.clientX, false);
      const end = () => {
        resize.removeEventListener("pointermove", move);
        store.set("width", String(width));
      };
      resize.addEventListener("pointermove", move);
      resize.addEventListener("lostpointercapture", end, { once: true });
    });
    resize.addEventListener("keydown", (event) => {
      const step = event.shiftKey ? 80 : 20;
      const next = { ArrowLeft: width + step, ArrowRight: width - step, Home: MIN_WIDTH, End: maxWidth() }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      setWidth(next, true);
    });

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
    addEventListener("resize", () => {
      setWidth(width, false);
      later();
    });
    // Keep the page's selection when the bubble is pressed.
    bubble.addEventListener("mousedown", (event) => event.preventDefault());
    bubble.addEventListener("click", () => {
      bubble.hidden = true;
      ask(SELECTION_QUESTION, selection);
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") bubble.hidden = true;
    });

    emptyState();
    setWidth(width, false);
    ui = { setOpen, ask, setReader };
    // A token given in the tag (data-token) names the reader now; with none, a reader's
    // stored conversation waits for setToken/setTokenProvider (the host page may call them
    // later) and is dropped only by setToken(null).
    if (token) setReader(readerOf(token));
    for (const queued of waiting.splice(0)) queued(ui);
    // The panel was open before this page loaded (a reload, or a citation followed): reopen.
    if (store.get("open")) setOpen(true, false);
  }

  // The page's handle on the widget (window.BookChat is the older name of the same object).
  const api = {
    open: () => whenUp((widget) => widget.setOpen(true)),
    close: () => whenUp((widget) => widget.setOpen(false)),
    ask: (question, selectedText) => whenUp((widget) =>
      widget.ask(String(question), selectedText ? String(selectedText) : "")),
    // A fixed token (null: signed out, which drops the reader's conversation from the widget).
    setToken(value) {
      provider = null;
      useToken(value);
    },
    // `async ({refresh}) => token | null`, asked before every request; refresh is true after
    // the server refused the last token (401): return a new one then.
    setTokenProvider(fn) {
      if (fn != null && typeof fn !== "function") throw new TypeError("setTokenProvider takes a function or null");
      provider = fn || null;
      if (provider) currentToken(false);
      else useToken(null);
    },
  };
  // Claimed now, so a second copy of this script stops at the top.
  window.bookchat = window.BookChat = api;
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
  // Sites that set the token from their own scripts wait for this (or find window.bookchat).
  dispatchEvent(new Event("bookchat:ready"));
})();
