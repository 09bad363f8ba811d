// remstate dashboard: the little the server-rendered pages cannot do alone.
// Hand-written (no framework, no build step, nothing fetched from elsewhere):
// it keeps the tab's bearer token, refreshes the page's fragment on each
// Server-Sent Event, and sends the actions to the JSON API.
"use strict";
(function () {
  const KEY = "remstate-token";
  const view = document.getElementById("view");
  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  const tokenForm = document.getElementById("token-form");
  const forget = document.getElementById("forget-token");

  const token = () => sessionStorage.getItem(KEY);
  function headers(extra) {
    const h = Object.assign({ Accept: "text/html, application/json" }, extra || {});
    const t = token();
    if (t) h.Authorization = "Bearer " + t;
    return h;
  }

  function say(text, kind) {
    if (!text) { notice.hidden = true; notice.textContent = ""; return; }
    notice.textContent = text;
    notice.dataset.kind = kind || "error";
    notice.hidden = false;
  }

  async function problem(response) {
    try {
      const body = await response.json();
      return body.detail || body.title || response.statusText;
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  function askToken(why) {
    tokenForm.hidden = false;
    if (why) say(why);
    document.getElementById("token").focus();
  }

  // Replace the view with a fresh rendering of its fragment, keeping focus where it can.
  let loading = null;
  let again = false;
  let afterEdit = false;
  async function refresh() {
    if (!view || !view.dataset.fragment) return;
    const editing = document.activeElement;
    if (view.contains(editing) && editing.matches("input, select, textarea")) {
      afterEdit = true; // never swap a control away while someone is choosing in it
      return;
    }
    if (loading) { again = true; return loading; }
    loading = (async () => {
      const focused = document.activeElement && document.activeElement.id;
      const response = await fetch(view.dataset.fragment, { headers: headers() });
      if (response.status === 401) { askToken(await problem(response)); return; }
      if (!response.ok) { say(await problem(response)); return; }
      view.innerHTML = await response.text();
      view.dataset.loaded = String(Date.now());
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    })();
    try { await loading; } catch (e) { say("The service did not answer: " + e.message); }
    loading = null;
    if (again) { again = false; refresh(); }
  }

  // Live updates: one EventSource a page; the browser reconnects by itself
  // after the service restarts, and the page refreshes once it is back.
  let source = null;
  let timer = null;
  function setLive(state, text) { live.dataset.state = state; live.textContent = text; }
  function connect() {
    if (!view || !view.dataset.events || !window.EventSource) return;
    if (source) source.close();
    let url = view.dataset.events;
    const t = token();
    if (t) url += (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(t);
    source = new EventSource(url);
    let dropped = false;
    source.onopen = () => {
      setLive("on", "live");
      if (dropped) { dropped = false; refresh(); }
    };
    source.onerror = () => { dropped = true; setLive("reconnecting", "reconnecting…"); };
    // A burst of writes is one refresh; a steady stream, one each 100 ms at most.
    const changed = () => {
      if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, 100);
    };
    for (const type of ["added", "modified", "deleted", "message"]) source.addEventListener(type, changed);
  }

  // Actions: buttons and forms that call the JSON API with the tab's token.
  async function send(el, body) {
    if (el.dataset.confirm && !window.confirm(el.dataset.confirm)) return;
    const extra = { "Content-Type": "application/json" };
    if (el.dataset.ifMatch) extra["If-Match"] = el.dataset.ifMatch;
    el.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(el.dataset.url, {
        method: el.dataset.method, headers: headers(extra), body: body,
      });
      if (response.status === 401) { askToken(await problem(response)); return; }
      if (!response.ok) { say(await problem(response)); return; }
      say("");
      if (el.dataset.then) { window.location.assign(el.dataset.then); return; }
      await refresh();
    } catch (e) {
      say("The service did not answer: " + e.message);
    } finally {
      el.removeAttribute("aria-busy");
    }
  }

  async function more(button) {
    const url = button.dataset.more + "?cursor=" + encodeURIComponent(button.dataset.cursor);
    const response = await fetch(url, { headers: headers() });
    if (!response.ok) { say(await problem(response)); return; }
    document.querySelector(button.dataset.into).insertAdjacentHTML("beforeend", await response.text());
    const next = response.headers.get("X-Next-Cursor");
    if (next) button.dataset.cursor = next; else button.remove();
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action], button[data-more]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.more !== undefined) more(button);
    else send(button, button.dataset.body === undefined ? undefined : button.dataset.body);
  });
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.hasAttribute("data-action-form")) {
      event.preventDefault();
      send(form, JSON.stringify(Object.fromEntries(new FormData(form))));
    } else if (form === tokenForm) {
      event.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
      tokenForm.hidden = true;
      say("");
      start();
    }
  });
  if (view) {
    view.addEventListener("focusout", () => {
      if (afterEdit) { afterEdit = false; setTimeout(refresh, 0); }
    });
  }
  forget.addEventListener("click", () => { sessionStorage.removeItem(KEY); window.location.reload(); });

  // Relative times ("5 min ago") age between refreshes.
  function ago(when) {
    const s = Math.round((Date.now() - when) / 1000);
    if (Math.abs(s) < 45) return "just now";
    const a = Math.abs(s);
    const [n, unit] = a >= 86400 ? [a / 86400, "d"] : a >= 3600 ? [a / 3600, "h"] : [a / 60, "min"];
    const text = Math.floor(n) + " " + unit;
    return s > 0 ? text + " ago" : "in " + text;
  }
  setInterval(() => {
    for (const t of document.querySelectorAll("#view time[datetime]")) {
      const when = Date.parse(t.getAttribute("datetime"));
      if (!Number.isNaN(when)) t.textContent = ago(when);
    }
  }, 30000);

  function start() {
    forget.hidden = !token();
    const needs = !tokenForm.hidden;
    if (needs && !token()) { askToken(); return; }
    tokenForm.hidden = true;
    if (needs || !view.querySelector("*")) refresh();
    connect();
  }
  if (view) start();
})();
