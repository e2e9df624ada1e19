// gatekeeper dashboard (SPEC §8.7): the task list, a task's details, live updates through
// EventSource, and approve/reject with an admin token typed by the user.
//
// Rules kept here: every text that comes from the server is put in the page with `textContent`
// (never parsed as HTML markup), and the token lives only in the password field of this tab: it
// is read when a decision is sent and never written to any browser storage or the URL.
"use strict";

(() => {
  const tasks = new Map(); // task_id -> record (with its computed status)
  let selected = null;
  let source = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function statusBadge(status) {
    const known = ["pending", "needs_review", "approved", "rejected"];
    const badge = el("span", status, "status");
    if (known.includes(status)) badge.classList.add(status);
    badge.dataset.status = status;
    return badge;
  }

  function taskUrl(id) {
    return "/api/tasks/" + encodeURIComponent(id);
  }

  async function fetchJson(url, options) {
    const response = await fetch(url, Object.assign({ cache: "no-store" }, options || {}));
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { ok: response.ok, status: response.status, body };
  }

  function newestFirst(a, b) {
    const ta = Date.parse(a.created_at) || 0;
    const tb = Date.parse(b.created_at) || 0;
    if (ta !== tb) return tb - ta;
    return a.task_id < b.task_id ? -1 : a.task_id > b.task_id ? 1 : 0;
  }

  function matchesFilter(task) {
    const status = $("filter-status").value;
    if (status && task.status !== status) return false;
    const text = $("filter-text").value.trim().toLowerCase();
    if (!text) return true;
    return (
      String(task.task_id).toLowerCase().includes(text) ||
      String(task.request_text || "").toLowerCase().includes(text)
    );
  }

  function renderList() {
    const rows = $("task-rows");
    const visible = Array.from(tasks.values()).filter(matchesFilter).sort(newestFirst);
    const fragment = document.createDocumentFragment();
    for (const task of visible) {
      const tr = document.createElement("tr");
      tr.dataset.taskId = task.task_id;
      if (task.task_id === selected) tr.classList.add("selected");
      tr.appendChild(el("td", task.task_id, "id"));
      const statusCell = el("td", null, "status-cell");
      statusCell.appendChild(statusBadge(task.status));
      tr.appendChild(statusCell);
      tr.appendChild(el("td", task.version, "version"));
      tr.appendChild(el("td", task.updated_at, "updated"));
      const request = el("td", task.request_text, "request");
      request.title = String(task.request_text || "");
      tr.appendChild(request);
      tr.addEventListener("click", () => select(task.task_id));
      fragment.appendChild(tr);
    }
    rows.replaceChildren(fragment);
    $("empty").hidden = visible.length !== 0;
    $("count").textContent = visible.length + " of " + tasks.size;
  }

  function fillList(listId, items, render) {
    const list = $(listId);
    list.replaceChildren();
    if (!items || items.length === 0) {
      list.appendChild(el("li", "none", "muted"));
      return;
    }
    for (const item of items) list.appendChild(render(item));
  }

  function renderDetails() {
    const pane = $("details");
    const task = selected === null ? undefined : tasks.get(selected);
    if (!task) {
      pane.hidden = true;
      return;
    }
    pane.hidden = false;
    pane.dataset.taskId = task.task_id;
    $("d-id").textContent = task.task_id;
    $("d-status").replaceWith(Object.assign(statusBadge(task.status), { id: "d-status" }));
    $("d-version").textContent = task.version;
    $("d-correlation").textContent = task.correlation_id;
    $("d-source").textContent = task.source;
    $("d-request").textContent = task.request_text || "";
    fillList("d-criteria", task.acceptance_criteria, (c) => el("li", c.id + ": " + c.text));
    fillList("d-scope", task.declared_scope, (s) => el("li", s));
    const p = task.pipeline;
    $("d-pipeline").textContent = p
      ? "ledger " + p.task + " · step " + (p.step === null || p.step === undefined ? "–" : p.step) +
        " · " + (p.state || "–") + " · contracts: " + ((p.contracts || []).join(", ") || "none")
      : "not a pipeline task";
    const d = task.decision;
    $("d-decision").textContent = d
      ? d.verdict + " by " + d.by + " at " + d.at + (d.reason ? " — " + d.reason : "")
      : "none yet";
    fillList("d-history", task.history, (h) =>
      el("li", h.at + " " + h.event + (h.by ? " by " + h.by : "") +
        (h.version ? " (v" + h.version + ")" : "") + (h.reason ? " — " + h.reason : "")));
  }

  function select(id) {
    selected = id;
    $("decide-result").textContent = "";
    renderList();
    renderDetails();
  }

  function upsert(task) {
    tasks.set(task.task_id, task);
    renderList();
    if (task.task_id === selected) renderDetails();
  }

  async function loadAll() {
    let cursor = null;
    for (let page = 0; page < 50; page++) {
      const url = "/api/tasks?limit=1000" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const result = await fetchJson(url);
      if (!result.ok || !result.body) break;
      for (const task of result.body.tasks) tasks.set(task.task_id, task);
      cursor = result.body.next_cursor;
      if (!cursor) break;
    }
    renderList();
    renderDetails();
  }

  async function refresh(id) {
    const result = await fetchJson(taskUrl(id));
    if (result.ok && result.body) {
      upsert(result.body);
    } else if (result.status === 404) {
      tasks.delete(id);
      renderList();
      renderDetails();
    }
  }

  function connect() {
    source = new EventSource("/api/events");
    source.addEventListener("open", () => {
      $("live").textContent = "live";
      $("live").className = "live on";
      document.body.dataset.live = "1";
    });
    source.addEventListener("error", () => {
      // EventSource reconnects by itself and sends Last-Event-ID; reload the list meanwhile.
      $("live").textContent = "reconnecting…";
      $("live").className = "live off";
      document.body.dataset.live = "0";
    });
    source.addEventListener("task_updated", (event) => {
      document.body.dataset.lastEventId = event.lastEventId;
      let data = null;
      try {
        data = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      const known = tasks.get(data.task_id);
      if (known && known.version >= data.version) return;
      refresh(data.task_id);
    });
  }

  async function decide(verdict) {
    const result = $("decide-result");
    result.className = "";
    if (selected === null) return;
    const token = $("token").value;
    if (!token) {
      result.textContent = "Type the admin token first.";
      result.className = "error";
      return;
    }
    const reason = $("reason").value.trim();
    const response = await fetchJson(taskUrl(selected) + "/" + verdict, {
      method: "POST",
      headers: {
        Authorization: "Bearer " + token,
        "Content-Type": "application/json",
      },
      body: JSON.stringify(reason ? { reason } : {}),
    });
    if (response.ok && response.body) {
      upsert(response.body);
      result.textContent = verdict === "approve" ? "Approved." : "Rejected.";
      result.className = "ok";
    } else {
      const message = response.body && response.body.error
        ? response.body.error.message
        : "HTTP " + response.status;
      result.textContent = "Refused: " + message;
      result.className = "error";
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    $("filter-status").addEventListener("change", renderList);
    $("filter-text").addEventListener("input", renderList);
    $("approve").addEventListener("click", () => decide("approve"));
    $("reject").addEventListener("click", () => decide("reject"));
    connect();
    await loadAll();
    document.body.dataset.ready = "1";
  });
})();
