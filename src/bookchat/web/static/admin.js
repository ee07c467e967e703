// The /admin page: an admin signs in (an account's token or the ADMIN_API_KEY, kept in this
// tab's sessionStorage), picks one of the deployment's books (kept in the page's address), then
// the page reads that book's insights API for a date range and draws it.
// Everything a reader wrote reaches the page through textContent, never as HTML; the charts are
// SVG elements built here (the page's CSP allows no inline style and no other origin).
"use strict";

(() => {
  const API = "/api/v1";
  const AUTH_KEY = "bookchat.admin.auth";
  const PAGE_SIZE = 10;
  const DEFAULT_DAYS = 30;
  const EXCERPT_CHARS = 160;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const CHART_HEIGHT = 220;
  const DEFAULT_BOOK = "default";
  const BOOKS_PAGE = 200; // the most GET /admin/books gives at once

  const $ = (id) => document.getElementById(id);

  // --- small helpers ------------------------------------------------------------------------

  function el(tag, options = {}, ...children) {
    const node = document.createElement(tag);
    if (options.className) node.className = options.className;
    if (options.text !== undefined) node.textContent = String(options.text);
    for (const [name, value] of Object.entries(options.attrs || {})) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  // A link target from the API: only http(s) URLs or paths of this site, never javascript: & co.
  function safeHref(url) {
    try {
      const parsed = new URL(url, location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch {
      return null;
    }
  }

  const numberFormat = new Intl.NumberFormat("en");
  const percentFormat = new Intl.NumberFormat("en", {
    style: "percent",
    maximumFractionDigits: 1,
  });

  function formatCount(value) {
    return numberFormat.format(value);
  }

  function formatLatency(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  function answerCount(row) {
    const a = row.answers;
    return a.rag + a.selected_text + a.no_context;
  }

  // Refused answers over all answers; null when there was no answer to judge.
  function refusalRate(row) {
    const answers = answerCount(row);
    return answers === 0 ? null : row.answers.no_context / answers;
  }

  function formatRate(rate) {
    return rate === null ? "–" : percentFormat.format(rate);
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  function utcToday() {
    return isoDay(new Date());
  }

  function addDays(iso, days) {
    const date = new Date(`${iso}T00:00:00Z`);
    date.setUTCDate(date.getUTCDate() + days);
    return isoDay(date);
  }

  function shortDay(iso) {
    return new Date(`${iso}T00:00:00Z`).toLocaleDateString("en", {
      month: "short",
      day: "numeric",
      timeZone: "UTC",
    });
  }

  function formatMoment(value) {
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  // An answer's Markdown read as plain words: link texts, no emphasis or code marks, one line.
  function plainText(markdown) {
    return String(markdown)
      .replace(/```[^\n]*\n?/g, " ")
      .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/^\s{0,3}(#{1,6}|[-*+]|\d+[.)]|>)\s+/gm, "")
      .replace(/(\*\*|__|\*|`)/g, "");
  }

  function excerpt(text, limit = EXCERPT_CHARS) {
    const flat = plainText(text).replace(/\s+/g, " ").trim();
    return flat.length <= limit ? flat : `${flat.slice(0, limit - 1).trimEnd()}…`;
  }

  function sectionLabel(section) {
    return section.heading ? `${section.title} › ${section.heading}` : section.title;
  }

  function sectionLink(section) {
    const href = safeHref(section.url);
    const label = sectionLabel(section);
    if (!href) return el("span", { text: label });
    return el("a", { text: label, attrs: { href, target: "_blank", rel: "noopener" } });
  }

  // --- who is signed in ---------------------------------------------------------------------

  function storedAuth() {
    try {
      const raw = sessionStorage.getItem(AUTH_KEY);
      const auth = raw ? JSON.parse(raw) : null;
      return auth && (auth.kind === "token" || auth.kind === "key") && auth.value ? auth : null;
    } catch {
      return null;
    }
  }

  function remember(auth) {
    try {
      if (auth) sessionStorage.setItem(AUTH_KEY, JSON.stringify(auth));
      else sessionStorage.removeItem(AUTH_KEY);
    } catch { /* storage blocked: the sign-in lasts as long as the page */ }
  }

  let auth = null;

  function authHeaders() {
    if (!auth) return {};
    return auth.kind === "token"
      ? { Authorization: `Bearer ${auth.value}` }
      : { "X-Admin-Key": auth.value };
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function failure(response) {
    let code = "http_error";
    let message = `The server answered ${response.status}.`;
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch { /* not the documented error shape: keep the status line */ }
    return new ApiError(response.status, code, message);
  }

  async function request(path, params, init = {}) {
    const query = params ? `?${new URLSearchParams(params)}` : "";
    let response;
    try {
      response = await fetch(`${API}${path}${query}`, {
        ...init,
        headers: { Accept: "application/json", ...authHeaders(), ...(init.headers || {}) },
      });
    } catch {
      throw new ApiError(0, "network_error", "The server could not be reached. Try again.");
    }
    if (!response.ok) throw await failure(response);
    return response;
  }

  async function getJson(path, params) {
    return (await request(path, params)).json();
  }

  // --- sign-in ------------------------------------------------------------------------------

  function showSignIn() {
    $("sign-in").hidden = false;
    $("dashboard").hidden = true;
    $("sign-out").hidden = true;
    $("who").hidden = true;
  }

  function showDashboard() {
    $("sign-in").hidden = true;
    $("dashboard").hidden = false;
    $("sign-out").hidden = false;
    $("who").hidden = false;
    $("who").textContent = auth.kind === "token" ? auth.label : "signed in with the admin key";
  }

  // Where a failed insights call leaves the admin: back at the form that fits, with a reason.
  function refusedMessage(error) {
    if (error.status === 403 && auth && auth.kind === "token") {
      return "This account is not an admin. Sign in with an admin account, or use the admin key.";
    }
    if (error.status === 403) {
      return "This server has no ADMIN_API_KEY set: sign in with an admin account instead.";
    }
    if (error.status === 401 && auth && auth.kind === "token") {
      return "Your sign-in has expired. Sign in again.";
    }
    return error.message;
  }

  function signOut(message = "", statusId = "login-status") {
    auth = null;
    loads += 1; // a load still on its way is not drawn for the next admin
    remember(null);
    for (const id of ["login-status", "key-status"]) $(id).textContent = "";
    $(statusId).textContent = message;
    $("login-password").value = "";
    $("admin-key").value = "";
    clearDashboard();
    forgetBooks();
    showSignIn();
  }

  async function enter(candidate, statusId) {
    auth = candidate;
    const list = await fetchBooks();
    if (auth !== candidate) return; // signed out meanwhile
    setBooks(list);
    try {
      await loadAll();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401 || error.status === 403) {
        signOut(refusedMessage(error), statusId);
        return;
      }
      // Any other failure (the server down, a 5xx): say so where the admin is looking.
      auth = null;
      showSignIn();
      $(statusId).textContent = error.message;
    }
  }

  async function onLogin(event) {
    event.preventDefault();
    const status = $("login-status");
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    if (!email || !password) {
      status.textContent = "Enter your email and your password.";
      return;
    }
    status.textContent = "Signing in…";
    auth = null;
    let token;
    try {
      const response = await request("/auth/login", null, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email, password }),
      });
      token = await response.json();
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    status.textContent = "";
    await enter({ kind: "token", value: token.access_token, label: token.user.email }, "login-status");
  }

  async function onKey(event) {
    event.preventDefault();
    const status = $("key-status");
    const key = $("admin-key").value.trim();
    if (!key) {
      status.textContent = "Enter the admin key.";
      return;
    }
    status.textContent = "Checking the key…";
    await enter({ kind: "key", value: key }, "key-status");
  }

  // --- the books ----------------------------------------------------------------------------

  // The books the admin can pick from (by slug, as the API lists them) and the one shown.
  const books = { list: [], slug: DEFAULT_BOOK };
  let pageTitle = "";

  // Every page of GET /admin/books; null when it cannot be read (the page then shows the
  // default book, as the unscoped insights routes do).
  async function fetchBooks() {
    const found = [];
    try {
      for (;;) {
        const page = await getJson("/admin/books", { limit: BOOKS_PAGE, offset: found.length });
        found.push(...page.items);
        if (page.items.length === 0 || found.length >= page.total) return found;
      }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return null;
    }
  }

  function bookTitle(slug) {
    const book = books.list.find((item) => item.slug === slug);
    if (book) return book.title;
    // Unlisted, the default book is titled by the server's BOOK_TITLE, as the top bar is.
    return slug === DEFAULT_BOOK ? $("brand").textContent : slug;
  }

  // The book in the page's address, so that a reload or a shared link opens it again.
  function rememberBook(slug) {
    const url = new URL(location.href);
    if (slug === DEFAULT_BOOK) url.searchParams.delete("book");
    else url.searchParams.set("book", slug);
    history.replaceState(history.state, "", url);
  }

  function bookNotice(text) {
    $("book-notice").hidden = !text;
    $("book-notice").textContent = text;
  }

  function showBook() {
    const title = bookTitle(books.slug);
    $("dashboard-title").textContent = `Insights · ${title}`;
    document.title = `Admin · ${title}`;
    $("book-select").value = books.slug;
  }

  // The picker (when there is more than the default book) and the book the address names.
  function setBooks(list) {
    books.list = list || [];
    $("book-select").replaceChildren(
      ...books.list.map((book) =>
        el("option", { text: `${book.title} (${book.slug})`, attrs: { value: book.slug } }),
      ),
    );
    $("book-picker").hidden = books.list.length < 2;
    const wanted = new URLSearchParams(location.search).get("book");
    const known = books.list.some((book) => book.slug === wanted);
    books.slug = known ? wanted : DEFAULT_BOOK;
    bookNotice("");
    if (wanted && !known && wanted !== DEFAULT_BOOK) {
      if (list) {
        bookNotice(`There is no book “${wanted}” here: showing the default book instead.`);
        rememberBook(DEFAULT_BOOK);
      } else {
        // The address stays: once the list can be read again, a reload opens that book.
        bookNotice(`The list of books could not be read: showing the default book, not “${wanted}”.`);
      }
    }
    showBook();
  }

  function forgetBooks() {
    books.list = [];
    books.slug = DEFAULT_BOOK;
    $("book-select").replaceChildren();
    $("book-picker").hidden = true;
    bookNotice("");
    $("dashboard-title").textContent = "Insights";
    document.title = pageTitle;
  }

  // Another book: its dashboard from the first page of each list, the old one's never drawn.
  async function onBook() {
    const slug = $("book-select").value;
    if (!books.list.some((book) => book.slug === slug)) return;
    books.slug = slug;
    rememberBook(slug);
    bookNotice("");
    showBook();
    clearDashboard();
    try {
      await loadAll();
    } catch (error) {
      handleFailure(error);
    }
  }

  function insightsPath(name) {
    return `/books/${encodeURIComponent(books.slug)}/insights/${name}`;
  }

  // --- the date range -----------------------------------------------------------------------

  const state = {
    start: "",
    end: "",
    offsets: { sections: 0, unanswered: 0, lowRated: 0 },
  };

  function setRange(days) {
    const end = utcToday();
    $("range-end").value = end;
    $("range-start").value = addDays(end, -(days - 1));
  }

  function readRange() {
    const start = $("range-start").value;
    const end = $("range-end").value;
    if (!start || !end) return "Choose both days of the range.";
    if (start > end) return "The first day must not be after the last day.";
    state.start = start;
    state.end = end;
    return null;
  }

  function rangeParams(extra = {}) {
    return { start: state.start, end: state.end, ...extra };
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  // --- totals -------------------------------------------------------------------------------

  function renderTotals(summary) {
    const totals = summary.totals;
    const items = [
      ["questions", "Questions", formatCount(totals.questions)],
      ["conversations", "Conversations", formatCount(totals.conversations)],
      ["readers", "Readers", formatCount(totals.readers)],
      ["refusal-rate", "Refusal rate", formatRate(refusalRate(totals))],
      ["thumbs-up", "Thumbs up", formatCount(totals.thumbs_up)],
      ["thumbs-down", "Thumbs down", formatCount(totals.thumbs_down)],
      ["latency-p50", "Median answer time", formatLatency(totals.latency_ms.p50)],
      ["latency-p95", "95% answered within", formatLatency(totals.latency_ms.p95)],
    ];
    const list = $("totals");
    list.replaceChildren();
    for (const [key, label, value] of items) {
      const item = el("div", { className: "total", attrs: { "data-total": key } });
      item.append(el("dt", { text: label }), el("dd", { text: value }));
      list.append(item);
    }
  }

  // --- questions per day --------------------------------------------------------------------

  // A round top for the count axis, at least the maximum: 2, 4, 6, 8 or 10 times a power of
  // ten, so that its middle line is a whole number of questions too.
  function niceCeiling(value) {
    if (value <= 2) return 2;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [2, 4, 6, 8, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  let lastDays = null;

  function drawPerDay(days) {
    lastDays = days;
    const box = $("per-day-chart");
    box.replaceChildren();
    const questions = days.reduce((sum, day) => sum + day.questions, 0);
    const empty = $("per-day-empty");
    if (questions === 0) {
      empty.hidden = false;
      empty.textContent =
        `No questions from ${state.start} to ${state.end}. Widen the date range, or check that ` +
        "the chat widget is on your book's pages (the demo at / shows it).";
      return;
    }
    empty.hidden = true;

    const width = Math.max(box.clientWidth, 280);
    const narrow = width < 520;
    const margin = { top: 16, right: 44, bottom: 30, left: narrow ? 30 : 40 };
    const plotWidth = width - margin.left - margin.right;
    const plotHeight = CHART_HEIGHT - margin.top - margin.bottom;
    const top = niceCeiling(Math.max(...days.map((day) => day.questions)));
    const band = plotWidth / days.length;
    const barWidth = Math.max(1, band * 0.72);
    const x = (index) => margin.left + index * band;
    const yCount = (count) => margin.top + plotHeight - (count / top) * plotHeight;
    const yRate = (rate) => margin.top + plotHeight - rate * plotHeight;

    const refused = days.reduce((sum, day) => sum + day.answers.no_context, 0);
    const answered = days.reduce((sum, day) => sum + answerCount(day), 0);
    const busiest = days.reduce((best, day) => (day.questions > best.questions ? day : best));
    const chart = svg("svg", {
      width,
      height: CHART_HEIGHT,
      viewBox: `0 0 ${width} ${CHART_HEIGHT}`,
      role: "img",
      "aria-labelledby": "per-day-svg-title per-day-svg-desc",
      class: "per-day",
    });
    chart.append(
      svg("title", { id: "per-day-svg-title" }, "Questions per day, with the refusal rate"),
      svg(
        "desc",
        { id: "per-day-svg-desc" },
        `${formatCount(questions)} questions from ${state.start} to ${state.end}; the busiest ` +
          `day was ${busiest.date} with ${formatCount(busiest.questions)}. ` +
          `${formatRate(answered ? refused / answered : null)} of the answers said the book ` +
          "does not cover the question. The table below the chart has every day's numbers.",
      ),
    );

    // Grid lines and the two axes' labels: counts on the left, refusal rate on the right.
    const grid = svg("g", { class: "grid", "aria-hidden": "true" });
    for (const fraction of [0, 0.5, 1]) {
      const y = margin.top + plotHeight - fraction * plotHeight;
      grid.append(
        svg("line", { x1: margin.left, x2: margin.left + plotWidth, y1: y, y2: y }),
        svg("text", { x: margin.left - 6, y: y + 4, class: "axis count-axis" }, formatCount(top * fraction)),
        svg("text", { x: margin.left + plotWidth + 6, y: y + 4, class: "axis rate-axis" }, percentFormat.format(fraction)),
      );
    }
    chart.append(grid);

    const bars = svg("g", { class: "bars" });
    days.forEach((day, index) => {
      const height = (day.questions / top) * plotHeight;
      const bar = svg("rect", {
        class: "bar",
        x: x(index) + (band - barWidth) / 2,
        y: yCount(day.questions),
        width: barWidth,
        height,
        "data-date": day.date,
        "data-questions": day.questions,
      });
      bar.append(
        svg(
          "title",
          {},
          `${day.date}: ${formatCount(day.questions)} questions, ` +
            `refusal rate ${formatRate(refusalRate(day))}`,
        ),
      );
      bars.append(bar);
    });
    chart.append(bars);

    // The refusal rate as a line, broken on days without answers (no rate to draw).
    let path = "";
    let drawing = false;
    const points = svg("g", { class: "rate-points" });
    days.forEach((day, index) => {
      const rate = refusalRate(day);
      if (rate === null) {
        drawing = false;
        return;
      }
      const cx = x(index) + band / 2;
      const cy = yRate(rate);
      path += `${drawing ? "L" : "M"}${cx.toFixed(1)} ${cy.toFixed(1)} `;
      drawing = true;
      const point = svg("circle", { cx, cy, r: 3, class: "rate-point", "data-date": day.date, "data-rate": rate });
      point.append(svg("title", {}, `${day.date}: refusal rate ${formatRate(rate)}`));
      points.append(point);
    });
    chart.append(svg("path", { d: path.trim(), class: "rate-line" }), points);

    // Day labels, spaced so they never overlap.
    const labels = svg("g", { class: "days", "aria-hidden": "true" });
    const every = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor(plotWidth / 56))));
    days.forEach((day, index) => {
      if (index % every !== 0) return;
      labels.append(
        svg("text", { x: x(index) + band / 2, y: CHART_HEIGHT - 8, class: "axis day-axis" }, shortDay(day.date)),
      );
    });
    chart.append(labels);

    const legend = el("p", { className: "legend", attrs: { "aria-hidden": "true" } });
    legend.append(
      el("span", { className: "key key-bar", text: "Questions (left axis)" }),
      el("span", { className: "key key-rate", text: "Refusal rate (right axis)" }),
    );
    box.append(chart, legend);
  }

  function renderPerDayTable(days) {
    const body = $("per-day-table").tBodies[0];
    body.replaceChildren();
    for (const day of days) {
      const row = el("tr");
      row.append(
        el("th", { text: day.date, attrs: { scope: "row" } }),
        el("td", { text: formatCount(day.questions) }),
        el("td", { text: formatCount(answerCount(day)) }),
        el("td", { text: formatCount(day.answers.no_context) }),
        el("td", { text: formatRate(refusalRate(day)) }),
      );
      body.append(row);
    }
  }

  // --- the lists ----------------------------------------------------------------------------

  function renderPager(id, page, key, reload) {
    const nav = $(id);
    nav.replaceChildren();
    if (page.total <= page.limit && page.offset === 0) return;
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = Math.min(page.offset + page.items.length, page.total);
    const previous = el("button", { text: "Previous", attrs: { type: "button" } });
    const next = el("button", { text: "Next", attrs: { type: "button" } });
    previous.disabled = page.offset === 0;
    next.disabled = page.offset + page.limit >= page.total;
    previous.dataset.direction = "previous";
    next.dataset.direction = "next";
    previous.addEventListener("click", () => {
      state.offsets[key] = Math.max(0, page.offset - page.limit);
      reload("previous");
    });
    next.addEventListener("click", () => {
      state.offsets[key] = page.offset + page.limit;
      reload("next");
    });
    nav.append(
      previous,
      el("span", { className: "page-info", text: `${first}–${last} of ${formatCount(page.total)}` }),
      next,
    );
  }

  function showEmpty(id, visible, text) {
    const node = $(id);
    node.hidden = !visible;
    node.textContent = visible ? text : "";
  }

  function renderSections(page) {
    const list = $("sections-chart");
    list.replaceChildren();
    list.start = page.offset + 1;
    showEmpty(
      "sections-empty",
      page.total === 0,
      "No answer cited a section in this range. Sections show up here once readers' " +
        "questions are answered from the book.",
    );
    const top = Math.max(1, ...page.items.map((item) => item.count));
    for (const item of page.items) {
      const share = item.count / top;
      const bar = svg("svg", {
        class: "bar-track",
        viewBox: "0 0 100 10",
        preserveAspectRatio: "none",
        "aria-hidden": "true",
        focusable: "false",
      });
      bar.append(svg("rect", { class: "bar", x: 0, y: 0, height: 10, width: (share * 100).toFixed(2) }));
      const row = el("li", { className: "bar-row", attrs: { "data-count": item.count } });
      const label = el("div", { className: "bar-label" });
      label.append(sectionLink(item), el("span", { className: "bar-count", text: formatCount(item.count) }));
      row.append(label, bar);
      list.append(row);
    }
    renderPager("sections-pager", page, "sections", loadSections);
  }

  function cell(label, ...children) {
    return el("td", { attrs: { "data-label": label } }, ...children);
  }

  function renderUnanswered(page) {
    const body = $("unanswered-table").tBodies[0];
    body.replaceChildren();
    $("unanswered-table").hidden = page.items.length === 0;
    showEmpty(
      "unanswered-empty",
      page.total === 0,
      "Nothing unanswered in this range: every question was answered from a passage of the " +
        "book. Questions the book cannot answer show up here, rewordings grouped, so you know " +
        "what to add.",
    );
    for (const item of page.items) {
      const row = el("tr");
      row.append(
        cell("Question", el("span", { className: "question", text: item.question }), ...otherQuestions(item)),
        cell("Times asked", ...timesAsked(item)),
        cell("Last asked", el("time", { text: formatMoment(item.last_asked_at), attrs: { datetime: item.last_asked_at } })),
        cell("Nearest section", item.section ? sectionLink(item.section) : el("span", { className: "muted", text: "none close" })),
      );
      body.append(row);
    }
    renderPager("unanswered-pager", page, "unanswered", loadUnanswered);
  }

  // A group near one section can hold different questions: say so, and list the latest others,
  // so that its count is not read as one question asked that many times.
  function otherQuestions(item) {
    const more = (item.questions || 1) - 1;
    if (more < 1) return [];
    const where = item.section ? " near the same section" : "";
    const summary = `${formatCount(more)} other question${more === 1 ? "" : "s"}${where}`;
    const list = el("ul", {}, ...item.others.map((text) => el("li", { text })));
    const unlisted = more - item.others.length;
    if (unlisted > 0) list.append(el("li", { className: "muted", text: `and ${formatCount(unlisted)} more` }));
    return [el("details", { className: "others" }, el("summary", { text: summary }), list)];
  }

  // How often the group was asked, and how many of those a model answered citing no passage
  // (the rest were refused).
  function timesAsked(item) {
    const count = el("span", { className: "count", text: formatCount(item.count) });
    if (!item.uncited) return [count];
    const uncited = `${formatCount(item.uncited)} answered, citing no passage`;
    return [count, el("span", { className: "uncited muted", text: uncited })];
  }

  function renderLowRated(page) {
    const body = $("low-rated-table").tBodies[0];
    body.replaceChildren();
    $("low-rated-table").hidden = page.items.length === 0;
    showEmpty(
      "low-rated-empty",
      page.total === 0,
      "No thumbs-down in this range. Ratings come from your front end calling " +
        "POST /api/v1/chat/messages/{message_id}/feedback when a reader rates an answer.",
    );
    for (const item of page.items) {
      const row = el("tr", { attrs: { "data-message-id": item.message_id } });
      const answer = el("span", { className: "answer", text: excerpt(item.answer) });
      answer.title = item.answer;
      const comment = item.comment
        ? el("span", { className: "comment", text: item.comment })
        : el("span", { className: "muted", text: "no comment" });
      row.append(
        cell("Question", el("span", { className: "question", text: item.question })),
        cell("Answer", answer),
        cell("Reader's comment", comment),
        cell("Rated", el("time", { text: formatMoment(item.rated_at), attrs: { datetime: item.rated_at } })),
        cell("Conversation", el("code", { className: "session", text: item.session_id })),
      );
      body.append(row);
    }
    renderPager("low-rated-pager", page, "lowRated", loadLowRated);
  }

  // --- loading ------------------------------------------------------------------------------

  function listParams(key) {
    return rangeParams({ limit: PAGE_SIZE, offset: state.offsets[key] });
  }

  // A pager's button keeps the keyboard focus where it was after its list is redrawn.
  async function reloadList(path, key, render, pagerId, from) {
    const load = loads;
    try {
      const page = await getJson(insightsPath(path), listParams(key));
      if (load !== loads) return undefined; // the range or book changed: that load redraws
      render(page);
    } catch (error) {
      if (load !== loads) return undefined;
      return handleFailure(error);
    }
    if (from) {
      const buttons = [...$(pagerId).querySelectorAll("button")];
      const same = buttons.find((button) => button.dataset.direction === from && !button.disabled);
      const usable = same || buttons.find((button) => !button.disabled);
      if (usable) usable.focus();
    }
  }

  function loadSections(from) {
    return reloadList("sections", "sections", renderSections, "sections-pager", from);
  }

  function loadUnanswered(from) {
    return reloadList("unanswered", "unanswered", renderUnanswered, "unanswered-pager", from);
  }

  function loadLowRated(from) {
    return reloadList("low-rated", "lowRated", renderLowRated, "low-rated-pager", from);
  }

  // Counts the loads of a whole dashboard: an answer to an older one (or its failure) is
  // dropped, not drawn over the newer range or book the admin picked meanwhile.
  let loads = 0;

  async function loadAll() {
    const load = ++loads;
    state.offsets = { sections: 0, unanswered: 0, lowRated: 0 };
    setStatus("Loading…");
    let summary, sections, unanswered, lowRated;
    try {
      // The summary first: a refused sign-in is answered once, before the lists are asked for.
      summary = await getJson(insightsPath("summary"), rangeParams());
      [sections, unanswered, lowRated] = await Promise.all([
        getJson(insightsPath("sections"), listParams("sections")),
        getJson(insightsPath("unanswered"), listParams("unanswered")),
        getJson(insightsPath("low-rated"), listParams("lowRated")),
      ]);
    } catch (error) {
      if (load === loads) throw error;
      return;
    }
    if (load !== loads) return;
    remember(auth);
    showDashboard();
    renderTotals(summary);
    drawPerDay(summary.days);
    renderPerDayTable(summary.days);
    renderSections(sections);
    renderUnanswered(unanswered);
    renderLowRated(lowRated);
    setStatus(`Showing ${summary.start} to ${summary.end} (UTC).`);
  }

  function handleFailure(error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status === 401 || error.status === 403) {
      const statusId = auth && auth.kind === "key" ? "key-status" : "login-status";
      signOut(refusedMessage(error), statusId);
      return;
    }
    setStatus(error.message);
  }

  async function onRange(event) {
    event.preventDefault();
    const problem = readRange();
    if (problem) {
      setStatus(problem);
      return;
    }
    try {
      await loadAll();
    } catch (error) {
      handleFailure(error);
    }
  }

  function clearDashboard() {
    lastDays = null;
    for (const id of ["totals", "per-day-chart", "sections-chart", "sections-pager", "unanswered-pager", "low-rated-pager"]) {
      $(id).replaceChildren();
    }
    for (const id of ["per-day-table", "unanswered-table", "low-rated-table"]) {
      $(id).tBodies[0].replaceChildren();
    }
    for (const id of ["per-day-empty", "sections-empty", "unanswered-empty", "low-rated-empty"]) {
      showEmpty(id, false, "");
    }
    setStatus("");
  }

  // --- the CSV ------------------------------------------------------------------------------

  // The CSV route needs the admin's header, so a plain link cannot fetch it: fetch it here and
  // hand the browser the bytes as a download.
  async function downloadCsv() {
    const button = $("csv-download");
    const slug = books.slug;
    const title = bookTitle(slug);
    button.disabled = true;
    setStatus("Preparing the CSV…");
    try {
      const response = await request(insightsPath("questions.csv"), rangeParams(), {
        headers: { Accept: "text/csv" },
      });
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      // The server's name for the file when it gives one (Content-Disposition), else ours.
      const disposition = response.headers.get("Content-Disposition") || "";
      const named = /filename="([^"]+)"/.exec(disposition);
      const prefix = slug === DEFAULT_BOOK ? "questions" : `questions-${slug}`;
      const filename = named ? named[1] : `${prefix}-${state.start}-${state.end}.csv`;
      const link = el("a", { attrs: { href: url, download: filename } });
      link.hidden = true;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      setStatus(`Downloaded the questions of ${title} from ${state.start} to ${state.end} as CSV.`);
    } catch (error) {
      handleFailure(error);
    } finally {
      button.disabled = false;
    }
  }

  // --- start --------------------------------------------------------------------------------

  function start() {
    pageTitle = document.title;
    setRange(DEFAULT_DAYS);
    readRange();
    $("login-form").addEventListener("submit", (event) => onLogin(event).catch(handleFailure));
    $("key-form").addEventListener("submit", (event) => onKey(event).catch(handleFailure));
    $("range-form").addEventListener("submit", onRange);
    for (const preset of document.querySelectorAll(".presets button")) {
      preset.addEventListener("click", (event) => {
        setRange(Number(preset.dataset.days));
        onRange(event);
      });
    }
    $("csv-download").addEventListener("click", downloadCsv);
    $("book-select").addEventListener("change", onBook);
    $("sign-out").addEventListener("click", () => signOut("You are signed out."));

    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (lastDays) drawPerDay(lastDays); }, 120);
    });

    const saved = storedAuth();
    if (saved) {
      enter(saved, saved.kind === "key" ? "key-status" : "login-status").catch(handleFailure);
    } else {
      showSignIn();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
